"""What a held poll waits on, whatever the broker behind it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class Flag:
    """A one-waiter ``asyncio.Event``: set / clear / is_set, and ``wait`` with a timeout.

    Each held poll has two; an Event with its waiter deque costs several times
    as much, and 10,000 held polls hold 20,000 of them.
    """

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self, timeout: float) -> bool:
        """Until set or ``timeout`` seconds pass; True if set. One waiter at a time."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(max(0.0, timeout), _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self._set


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription:
    """One held poll's interest in one channel.

    ``wake()`` is called by the broker for every message on the channel and
    whenever messages may have been missed (a reconnect): either way the poll
    re-checks the database, which is the record of truth. ``ready`` is set
    once the broker has confirmed the subscription, so that anything published
    from then on wakes this poll.
    """

    __slots__ = ("channel", "ready", "_woken", "messages")

    def __init__(self, channel: str, woken: Flag | None = None) -> None:
        self.channel = channel
        self.ready = Flag()
        # A poll that listens on several channels gives them one flag to wait on (one
        # waiter, no task per channel); each keeps its own messages.
        self._woken = Flag() if woken is None else woken
        self.messages: list[bytes | str] = []

    def wake(self, message: bytes | str | None = None) -> None:
        if message is not None:
            self.messages.append(message)
        self._woken.set()

    def clear(self) -> None:
        """Forget earlier wake-ups: call this *before* checking the database."""
        self._woken.clear()
        self.messages.clear()

    async def wait_ready(self, timeout: float) -> bool:
        return await self.ready.wait(timeout)

    async def wait(self, timeout: float) -> bool:
        """Wait until woken or ``timeout`` seconds pass; True if woken."""
        return await self._woken.wait(timeout)


class Hub:
    """What a hub gives held polls: ``async with hub.subscribe(channel) as subscription``.

    Subclasses say where a subscription lives (``_add``) and how it leaves (``_remove``).
    """

    @asynccontextmanager
    async def subscribe(self, channel: str, woken: Flag | None = None) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel, woken)
        self._add(subscription)
        try:
            yield subscription
        finally:
            self._remove(subscription)

    def _add(self, subscription: Subscription) -> None:
        raise NotImplementedError

    def _remove(self, subscription: Subscription) -> None:
        raise NotImplementedError


class Broker(Protocol):
    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish ``(channel, payload)`` pairs. Called from synchronous code."""

    def subscribe(self, channel: str, woken: Flag | None = None) -> AbstractAsyncContextManager[Subscription]:
        """Hold a subscription to ``channel`` for the duration of the block (woken by ``woken``,
        a flag it may share with the poll's other subscriptions, if given)."""

    def wake_everyone(self) -> int:
        """Wake every subscription of this process; return how many."""

    def auth_epoch(self) -> object | None:
        """The running loop's current auth epoch (see ``RedisHub``), or None if
        this broker cannot promise that every revocation reaches it in order."""
