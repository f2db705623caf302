"""How many polls each user holds in this process, so one user cannot hog a worker."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class TooManyPolls(Exception):
    """A held poll past a limit: 429 for the user's, 503 for the process's."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class PollLimiter:
    def __init__(self) -> None:
        self._held: Counter[int] = Counter()
        self._total = 0
        self._lock = threading.Lock()  # WSGI servers call from several threads

    def acquire(self, user_id: int, per_user: int, total: int) -> str | None:
        """Count one more held poll, or say which limit it would pass: "user" or "process"."""
        with self._lock:
            if self._total >= total:
                return "process"
            if self._held[user_id] >= per_user:
                return "user"
            self._held[user_id] += 1
            self._total += 1
            return None

    def release(self, user_id: int) -> None:
        with self._lock:
            self._total -= 1
            self._held[user_id] -= 1
            if self._held[user_id] <= 0:
                del self._held[user_id]

    @contextmanager
    def holding(self, user_id: int, per_user: int, total: int) -> Iterator[None]:
        """One more held poll for the block; TooManyPolls past a limit."""
        refused = self.acquire(user_id, per_user, total)
        if refused == "user":
            raise TooManyPolls(
                429,
                "too_many_polls",
                f"This user already holds {per_user} polls; close one or wait for it to be answered.",
            )
        if refused == "process":
            raise TooManyPolls(503, "server_busy", "This server holds as many polls as it can; try again shortly.")
        try:
            yield
        finally:
            self.release(user_id)

    @property
    def held(self) -> int:
        return self._total


poll_limiter = PollLimiter()
