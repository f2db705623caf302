"""Every cursor notify hands out, encoded and decoded here and nowhere else.

A stream's cursor is the decimal ``seq`` of the last item a client has in that
stream (0 for none): short, and the same kind of offset as Telegram's getUpdates.
What clients may rely on (docs/http.md, "Cursors"): a stream's cursor is an opaque
string to send back as ``after``; a multi-stream poll's cursor is
``<stream>:<cursor>`` for each stream, comma-separated, in the order of ``streams``
(so a client may keep one stream's part, or add a stream with no part). Only the
server compares cursors or reads numbers in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_CURSOR = re.compile(r"[0-9]{1,18}")


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


def encode_compound(positions: Iterable[tuple[str, int]]) -> str:
    """A multi-stream poll's cursor: ``inbox:5,room:42:17``."""
    return ",".join(f"{name}:{encode(seq)}" for name, seq in positions)


def decode_compound(raw: str, names: Sequence[str]) -> dict[str, int]:
    """The cursor of each stream a compound cursor names (streams it leaves out have none).

    Each part is ``<stream>:<cursor>``, the stream one of ``names`` and named once;
    the cursor follows the last colon (topic names may contain colons, cursors never).
    """
    positions: dict[str, int] = {}
    for part in raw.split(",") if raw else []:
        name, colon, value = part.rpartition(":")
        if not colon or name not in names or name in positions:
            raise InvalidCursor(
                "With 'streams', 'after' must be the compound cursor of an earlier answer: "
                f"'<stream>:<cursor>' for streams listed in 'streams', comma-separated, each once; got {part[:60]!r}."
            )
        try:
            positions[name] = decode(value)
        except InvalidCursor:
            raise InvalidCursor(
                f"The cursor of stream {name[:40]!r} in 'after' must be one returned by an earlier poll "
                f"(up to 18 digits), got {value[:40]!r}."
            ) from None
    return positions
