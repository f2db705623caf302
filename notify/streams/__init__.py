"""What a poll follows: the user's inbox, or a topic.

A stream is a small object that knows its channel, its head, its page query,
its snapshot and its permission; the engine (notify.polling) holds a poll on any
set of them with one protocol. ``named`` turns a name from a request into one.
"""

from __future__ import annotations

from notify.cursor import INBOX
from notify.presence import is_events_topic
from notify.streams.base import Result, Stream, StreamError
from notify.streams.inbox import InboxStream
from notify.streams.topic import PresenceEventsStream, TopicStream

__all__ = ["INBOX", "InboxStream", "PresenceEventsStream", "Result", "Stream", "StreamError", "TopicStream", "named"]


def named(name: str, user_id: int) -> Stream:
    """The stream a poll names: ``"inbox"`` (the user's own), a topic's presence events
    (``presence:<topic>``) or a topic's name (already validated)."""
    if name == INBOX:
        return InboxStream(user_id)
    return PresenceEventsStream(name) if is_events_topic(name) else TopicStream(name)
