"""Exponential backoff with full jitter, for errors only.

Full jitter (a uniform draw between zero and the exponential ceiling, see the AWS
Architecture Blog's "Exponential Backoff And Jitter") spreads clients that failed
at the same moment, say when a server restarts, so that they do not come back in
one wave. A successful poll resets it: between good answers the client re-polls
at once, because the server holds the request until there is something to say.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A Retry-After longer than this is more likely a mistake than a plan.
MAX_RETRY_AFTER = 3600.0


class Backoff:
    """Delays that grow as ``base * 2**failures`` up to ``cap``, each drawn uniformly below that ceiling."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, draw: Callable[[float, float], float] = random.uniform):
        if base <= 0 or cap < base:
            raise ValueError(f"Backoff needs 0 < base <= cap, got base={base!r}, cap={cap!r}.")
        self.base = base
        self.cap = cap
        self.failures = 0
        self._draw = draw

    def ceiling(self) -> float:
        # min() on the exponent first: 2.0**1100 would overflow a float.
        return min(self.cap, self.base * 2.0 ** min(self.failures, 64))

    def next_delay(self) -> float:
        """The wait before the next attempt, counting one more failure."""
        delay = self._draw(0.0, self.ceiling())
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
