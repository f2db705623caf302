"""An in-process broker for a single process without Redis (the quick start's fallback).

Publishing works from any thread: each waiter is woken in its own event loop.
Never use it with more than one worker process: a notification sent in one
process would not wake polls held in another (they would see it only at their
timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from notify.broker.base import Flag, Subscription


class MemoryBroker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, Subscription]]] = {}

    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        for channel, payload in messages:
            with self._lock:
                targets = list(self._waiters.get(channel, ()))
            for loop, subscription in targets:
                with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting there
                    loop.call_soon_threadsafe(subscription.wake, payload)

    @asynccontextmanager
    async def subscribe(self, channel: str, woken: Flag | None = None) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel, woken)
        subscription.ready.set()
        entry = (asyncio.get_running_loop(), subscription)
        with self._lock:
            self._waiters.setdefault(channel, set()).add(entry)
        try:
            yield subscription
        finally:
            with self._lock:
                waiters = self._waiters.get(channel)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[channel]

    @property
    def waiter_count(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    def auth_epoch(self) -> None:
        return None  # every held poll verifies its credential

    def wake_everyone(self) -> int:
        with self._lock:
            targets = [entry for waiters in self._waiters.values() for entry in waiters]
        woken = 0
        for loop, subscription in targets:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(subscription.wake)
                woken += 1
        return woken
