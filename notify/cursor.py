"""Every cursor notify hands out, encoded and decoded here and nowhere else.

A topic's cursor is the decimal ``seq`` of the last item a client has in that
stream (0 for none): short, and the same kind of offset as Telegram's getUpdates.
The inbox follows two streams, the user's own notifications and the announcements
every user gets (notify.announcements): its cursor is ``<notifications>`` while the
client has no announcement, ``<notifications>.<announcements>`` once it has; a cursor
of before announcements existed stays valid.
What clients may rely on (docs/http.md, "Cursors"): a stream's cursor is an opaque
string to send back as ``after``; a multi-stream poll's cursor is
``<stream>:<cursor>`` for each stream, comma-separated, in the order of ``streams``
(so a client may keep one stream's part, or add a stream with no part). Only the
server compares cursors or reads numbers in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

# The name of the user's own stream in a multi-stream poll (never a topic's: notify.topics).
INBOX = "inbox"

_CURSOR = re.compile(r"[0-9]{1,18}")
_INBOX_CURSOR = re.compile(r"([0-9]{1,18})(?:\.([0-9]{1,18}))?")


@dataclass(frozen=True)
class InboxCursor:
    """Where a client is in the user's inbox: the last notification and the last announcement it has."""

    notifications: int
    announcements: int = 0

    def ahead_of(self, head: InboxCursor) -> bool:
        return self.notifications > head.notifications or self.announcements > head.announcements

    def behind(self, head: InboxCursor) -> bool:
        return self.notifications < head.notifications or self.announcements < head.announcements


# A stream's cursor: the inbox's, or a topic's seq.
Cursor: TypeAlias = InboxCursor | int


class InvalidCursor(ValueError):
    """A cursor that this server never handed out; the message says what is accepted."""


def encode(seq: int) -> str:
    return str(seq)


def decode(raw: str) -> int:
    if not _CURSOR.fullmatch(raw):
        raise InvalidCursor(
            f"'after' must be a cursor returned by an earlier poll (a string of up to 18 digits), got {raw[:40]!r}."
        )
    return int(raw)


def encode_inbox(position: InboxCursor) -> str:
    if not position.announcements:
        return encode(position.notifications)
    return f"{position.notifications}.{position.announcements}"


def decode_inbox(raw: str) -> InboxCursor:
    match = _INBOX_CURSOR.fullmatch(raw)
    if match is None:
        raise InvalidCursor(
            f"'after' must be a cursor returned by an earlier poll (digits, and a dot before more digits), "
            f"got {raw[:40]!r}."
        )
    return InboxCursor(int(match[1]), int(match[2] or 0))


def encode_for(position: Cursor) -> str:
    """Any stream's cursor (the inbox's or a topic's)."""
    return encode_inbox(position) if isinstance(position, InboxCursor) else encode(position)


def decode_for(stream: str, raw: str) -> Cursor:
    """The cursor of the stream named ``stream`` ("inbox" or a topic)."""
    return decode_inbox(raw) if stream == INBOX else decode(raw)


def encode_compound(positions: Iterable[tuple[str, Cursor]]) -> str:
    """A multi-stream poll's cursor: ``inbox:5,room:42:17``."""
    return ",".join(f"{name}:{encode_for(position)}" for name, position in positions)


def decode_compound(raw: str, names: Sequence[str]) -> dict[str, Cursor]:
    """The cursor of each stream a compound cursor names (streams it leaves out have none).

    Each part is ``<stream>:<cursor>``, the stream one of ``names`` and named once;
    the cursor follows the last colon (topic names may contain colons, cursors never).
    """
    positions: dict[str, Cursor] = {}
    for part in raw.split(",") if raw else []:
        name, colon, value = part.rpartition(":")
        if not colon or name not in names or name in positions:
            raise InvalidCursor(
                "With 'streams', 'after' must be the compound cursor of an earlier answer: "
                f"'<stream>:<cursor>' for streams listed in 'streams', comma-separated, each once; got {part[:60]!r}."
            )
        try:
            positions[name] = decode_for(name, value)
        except InvalidCursor:
            raise InvalidCursor(
                f"The cursor of stream {name[:40]!r} in 'after' must be one returned by an earlier poll "
                f"(digits{', and a dot before more digits' if name == INBOX else ''}), got {value[:40]!r}."
            ) from None
    return positions
