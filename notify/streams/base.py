"""The shape every stream has, and what a stream answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from notify.cursor import Cursor


class StreamError(Exception):
    """One stream refuses the poll (403, 410, 400): the whole poll fails, saying which."""

    def __init__(self, status: int, code: str, detail: str, stream: str, **extra: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.stream = stream
        self.extra = extra


@dataclass
class Result:
    """What one stream answers: the cursor past its items, the items (JSON, ready to send),
    and for the inbox the unread count (None until known)."""

    cursor: Cursor
    items: list[bytes] = field(default_factory=list)
    unread: int | None = None


class Stream:
    """One stream a poll follows. The synchronous methods run in notify.db's threads."""

    #: The stream's name in a multi-stream poll and its errors ("inbox", or the topic's name).
    name: str
    #: The pub/sub channel its new items are announced on.
    channel: str
    #: Every channel that can carry its news (the inbox: the user's own and the announcements').
    channels: tuple[str, ...] = ()
    #: Whether reading it needs the project's permission (asked on every poll, and again
    #: before a held poll answers with new items: the right may have ended meanwhile).
    guarded = False
    #: Whether a held poll on it marks its user present there (a topic: notify.presence).
    marks_presence = False

    def snapshot(self, limit: int) -> Result:
        """The head and the newest items up to it (a poll without a cursor)."""
        raise NotImplementedError

    def look(self, after: Any, limit: int) -> Result:
        """Up to ``limit`` items after ``after``; StreamError for a cursor this stream did not issue
        (400) or no longer keeps (410)."""
        raise NotImplementedError

    def permitted(self, user_id: int) -> bool:
        return True

    def forbidden(self) -> StreamError:
        return StreamError(403, "forbidden", f"You may not read {self.name!r}.", self.name)

    async def batched_head(self) -> Any:
        """The head read with other polls' in one query (notify.batching), or None if this
        stream has no batched head: the engine then looks in the database."""
        return None

    async def batched_snapshot(self, limit: int) -> Result | None:
        """``snapshot`` with its look-ups read with other polls' (notify.batching), or None if this
        stream has no such thing: the engine then calls ``snapshot`` in a database thread."""
        return None

    def ahead(self) -> StreamError:
        """The error for a cursor past the stream's head (never issued for this stream)."""
        raise NotImplementedError

    def ahead_of(self, after: Any, head: Any) -> bool:
        """Whether ``after`` is past the head (``batched_head``'s): a cursor never issued here."""
        return bool(after > head)

    def behind(self, after: Any, head: Any) -> bool:
        """Whether the stream has items past ``after``."""
        return bool(after < head)

    def listens_to(self) -> tuple[str, ...]:
        return self.channels or (self.channel,)

    def from_messages(self, heard: Mapping[str, Sequence[bytes | str]], after: Any, limit: int) -> Result | None:
        """The page that continues ``after`` from the pub/sub messages heard on its channels
        alone, or None if they cannot tell."""
        raise NotImplementedError

    async def finish(self, result: Result) -> None:
        """Complete a result before it is answered (the inbox: its unread count)."""

    def body(self, result: Result) -> bytes:
        """The stream's answer as JSON."""
        raise NotImplementedError
