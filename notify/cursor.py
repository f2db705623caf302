"""The poll cursor: an opaque string for clients, a stream position for us.

Today it is the decimal ``seq`` of the last notification a client has (0 for
none): short, and the same kind of offset as Telegram's getUpdates. Clients must
treat it as opaque so that it can gain a version or a stream name later.
"""

from __future__ import annotations

import re

_CURSOR = re.compile(r"[0-9]{1,18}")


class InvalidCursor(ValueError):
    """A cursor that this server never handed out."""


def encode(seq: int) -> str:
    return str(seq)


def decode(raw: str) -> int:
    if not _CURSOR.fullmatch(raw):
        raise InvalidCursor(
            f"'after' must be a cursor returned by an earlier poll (a string of up to 18 digits), got {raw[:40]!r}."
        )
    return int(raw)
