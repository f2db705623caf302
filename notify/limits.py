"""How many polls each user holds in this process, so one user cannot hog a worker."""

from __future__ import annotations

import threading
from collections import Counter


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

    @property
    def held(self) -> int:
        return self._total


poll_limiter = PollLimiter()
