"""The wire formats of a stream: the pub/sub message a held poll can answer from, and the
JSON body of a poll's answer.

A message is ``b"<seq> <unread> <item JSON>"``: the notification (or topic
message) as the poll answers it, its number in its stream, and for a user's
stream the unread count when it was published (``-`` if unknown; always ``-`` on
a topic, which has no such count). A woken poll whose messages continue its
cursor without a gap answers from them without a database query; anything else
(a gap, an unknown count where one is needed, a wake-up without a message) sends
it back to the database, which stays the record of truth. With NOTIFY["METRICS"] on,
the seq field is ``<seq>@<publish time in Unix ms>`` (notify.metrics: delivery latency).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from notify import cursor, metrics

# Published on a user's channel when a credential of theirs ends (a token revoked, a
# logout, a password change): held polls then check that their credentials still hold.
AUTH_CHANGED = b"auth"

T = TypeVar("T")


def notification_json(notification: dict[str, Any]) -> bytes:
    return json.dumps(notification, separators=(",", ":")).encode()


def message(seq: int, unread: int | None, notification: dict[str, Any]) -> bytes:
    """With metrics on, the seq field ends in ``@<publish time in Unix ms>`` (notify.metrics.stamp)."""
    return b"%d%s %s %s" % (
        seq,
        metrics.stamp(),
        b"-" if unread is None else b"%d" % unread,
        notification_json(notification),
    )


def announcement_message(seq: int, last_user_id: int, announcement: dict[str, Any]) -> bytes:
    """An announcement on the announcements channel: ``b"<seq> <last_user_id> <item JSON>"``
    (the item as an unread notification; users above ``last_user_id`` do not get it)."""
    return b"%d%s %d %s" % (seq, metrics.stamp(), last_user_id, notification_json(announcement))


def inbox_body(position: cursor.InboxCursor, notifications: list[bytes], unread: int) -> bytes:
    """The inbox's answer: ``{"cursor", "notifications", "unread_count"}``."""
    return b'{"cursor":"%s","notifications":[%s],"unread_count":%d}' % (
        cursor.encode_inbox(position).encode(),
        b",".join(notifications),
        unread,
    )


def topic_body(position: int, messages: list[bytes]) -> bytes:
    """A topic's answer: ``{"cursor", "messages"}``."""
    return b'{"cursor":"%s","messages":[%s]}' % (cursor.encode(position).encode(), b",".join(messages))


# What an answer adds around its items, at most: the braces and keys, the cursor and the
# unread count (each at most 20 digits). Counted in every page's byte budget.
ENVELOPE_BYTES = 128


def within_budget(items: Iterable[T], budget: int, size: Callable[[T], int]) -> list[T]:
    """The first of ``items`` that fit in one answer of at most ``budget`` bytes
    (NOTIFY["MAX_ANSWER_BYTES"]), each of ``size(item)`` bytes and the comma before it,
    the envelope counted:
    a page stops before the item that would pass the budget, as it stops at ``limit``.
    Read lazily: nothing is taken from ``items`` past the first item that does not fit.

    Never empty when there is an item: one larger than the whole budget (stored before
    the size limits, or under larger ones) is answered alone, so that a client's cursor
    always moves on.
    """
    taken: list[T] = []
    used = ENVELOPE_BYTES - 1  # the first item has no comma before it
    for item in items:
        used += size(item) + 1
        if used > budget and taken:
            break
        taken.append(item)
    return taken


def run_from_messages(
    messages: Iterable[bytes | str], after: int, limit: int, budget: int
) -> list[tuple[int, int | None, bytes]]:
    """``(seq, unread, body)`` of the messages that continue ``after`` without a gap, at most
    ``limit`` and as many as fit in ``budget`` bytes (``within_budget``).

    Empty if the first is missing or any message is garbled: the caller asks the database.
    """
    parsed: list[tuple[int, int | None, bytes]] = []
    try:
        for raw in messages:
            data = raw.encode() if isinstance(raw, str) else raw
            if data == AUTH_CHANGED:
                continue
            seq_field, unread_field, body = data.split(b" ", 2)
            parsed.append(
                (int(seq_field.partition(b"@")[0]), None if unread_field == b"-" else int(unread_field), body)
            )
    except ValueError:
        return []
    parsed.sort(key=lambda item: item[0])
    picked: list[tuple[int, int | None, bytes]] = []
    expected = after + 1
    for seq, unread, body in parsed:
        if seq < expected:
            continue  # already delivered, or a duplicate
        if seq > expected or len(picked) == limit:
            break  # a gap: what follows it must come from the database
        picked.append((seq, unread, body))
        expected += 1
    return within_budget(picked, budget, lambda item: len(item[2]))
