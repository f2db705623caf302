"""What can go wrong, sorted by what the caller should do about it.

The poll loop retries ``TransientError`` itself and restarts on
``InvalidCursorError`` and ``CursorExpiredError``; everything else means retrying cannot help, so it reaches
the caller.
"""

from __future__ import annotations


class NotifyError(Exception):
    """Base of every error this client raises; ``status`` and ``code`` as the server sent them."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(NotifyError):
    """The server refused the token (401): it is wrong, revoked, or its user is gone."""


class RequestError(NotifyError):
    """The server refused the request itself (400, 403, 404, 405, 413, a redirect): a bug or a wrong URL."""


class InvalidCursorError(RequestError):
    """The server cannot resume from this cursor (400 ``invalid_cursor``): start again without one.

    ``stream``: in a multi-stream poll, the stream whose cursor it is, when the server said.
    """

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, stream: str | None = None
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.stream = stream


class CursorExpiredError(RequestError):
    """A topic no longer keeps the messages after this cursor (410 ``cursor_expired``).

    ``oldest_cursor`` is where that topic can be resumed (messages were missed);
    ``stream`` is the topic, in a multi-stream poll.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        stream: str | None = None,
        oldest_cursor: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.stream = stream
        self.oldest_cursor = oldest_cursor


class ProtocolError(NotifyError):
    """A success status with a body that is not a notify answer: a wrong URL or something in the way."""


class TransientError(NotifyError):
    """The server was unreachable or said "not now" (429, 5xx, timeout); ``retry_after`` is its hint, in seconds."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after
