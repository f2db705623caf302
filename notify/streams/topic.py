"""A topic: a named stream many users read (a chat room, a lobby), numbered in commit order (notify.topics)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from notify import pages, presence, topics
from notify.conf import conf
from notify.models import Topic, TopicMessage
from notify.streams.base import Result, Stream, StreamError

# --- queries (synchronous: notify.db's threads) -------------------------------------


def topic_head(name: str) -> tuple[int, int]:
    """``(last_seq, pruned_seq)`` of a topic; (0, 0) for one nothing was published to."""
    return Topic.objects.filter(name=name).values_list("last_seq", "pruned_seq").first() or (0, 0)


def message_json(message: TopicMessage) -> bytes:
    return pages.notification_json(topics.message_dict(message))


def topic_snapshot(name: str, limit: int) -> tuple[int, list[bytes]]:
    """The head, and the newest ``limit`` messages up to it as JSON, oldest first; no more than
    fit in one answer (MAX_ANSWER_BYTES: the newest are kept, as ``limit`` keeps them).

    The head is read first: whatever commits after it is past the returned cursor.
    """
    cursor, _ = topic_head(name)
    newest = (
        TopicMessage.objects.filter(topic_id=name, seq__lte=cursor).select_related("sender").order_by("-seq")[:limit]
    )
    return cursor, pages.within_budget(map(message_json, newest), conf.MAX_ANSWER_BYTES, len)[::-1]


def topic_page_after(name: str, after: int, limit: int) -> tuple[int, list[bytes], int, int]:
    """The messages after ``after`` as JSON, oldest first, up to ``limit`` and no more than fit
    in one answer (MAX_ANSWER_BYTES), the cursor past the last of them, and the topic's
    ``(last_seq, pruned_seq)``.

    The head is read *after* the messages: retention raises pruned_seq in the
    transaction that deletes, so if pruned_seq is still at or below ``after`` now,
    nothing after ``after`` had been deleted when the messages were read, and the
    page has no hole. The caller refuses the page (410) otherwise.
    """
    rows = list(
        TopicMessage.objects.filter(topic_id=name, seq__gt=after).select_related("sender").order_by("seq")[:limit]
    )
    last_seq, pruned_seq = topic_head(name)
    items = pages.within_budget(map(message_json, rows), conf.MAX_ANSWER_BYTES, len)
    if not items:
        return after, [], last_seq, pruned_seq
    return rows[len(items) - 1].seq, items, last_seq, pruned_seq


# --- the stream -----------------------------------------------------------------------


class TopicStream(Stream):
    guarded = True
    marks_presence = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.channel = conf.channel_for_topic(name)

    def snapshot(self, limit: int) -> Result:
        return Result(*topic_snapshot(self.name, limit))

    def look(self, after: int, limit: int) -> Result:
        cursor, messages, last_seq, pruned_seq = topic_page_after(self.name, after, limit)
        if after < pruned_seq:
            raise StreamError(
                410,
                "cursor_expired",
                f"Topic {self.name!r} no longer keeps the messages after this cursor (its retention deleted "
                "them). Poll again from 'oldest_cursor', the oldest cursor it still has, or without a cursor "
                "for the newest.",
                self.name,
                oldest_cursor=str(pruned_seq),
            )
        if after > last_seq:
            raise self.ahead()
        return Result(cursor, messages)

    def permitted(self, user_id: int) -> bool:
        return topics.permitted(user_id, self.name, "read")

    def forbidden(self) -> StreamError:
        return StreamError(403, "forbidden", f"You may not read topic {self.name!r}.", self.name)

    def ahead(self) -> StreamError:
        return StreamError(
            400,
            "invalid_cursor",
            f"The cursor is ahead of topic {self.name!r}'s newest message: it was not issued for this topic. "
            "Poll without it to get a fresh one.",
            self.name,
        )

    def from_messages(self, heard: Mapping[str, Sequence[bytes | str]], after: int, limit: int) -> Result | None:
        picked = pages.run_from_messages(heard.get(self.channel, ()), after, limit, conf.MAX_ANSWER_BYTES)
        if not picked:
            return None
        return Result(picked[-1][0], [body for _, _, body in picked])

    def body(self, result: Result) -> bytes:
        assert isinstance(result.cursor, int)
        return pages.topic_body(result.cursor, result.items)


class PresenceEventsStream(TopicStream):
    """``presence:<topic>``: the topic's join and leave events (notify.presence), readable by
    whoever may read the topic. Following it marks no presence."""

    marks_presence = False

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.topic = name.removeprefix(presence.EVENTS_PREFIX)

    def permitted(self, user_id: int) -> bool:
        return topics.permitted(user_id, self.topic, "read")

    def forbidden(self) -> StreamError:
        return StreamError(403, "forbidden", f"You may not read topic {self.topic!r}'s presence.", self.name)
