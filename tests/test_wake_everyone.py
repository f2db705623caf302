"""Waking every held poll (at shutdown, notify.lifecycle) wakes each hub in its own event loop.

A hub's subscriptions wait on futures of the hub's loop. Resolved from another thread, the
future's callbacks are queued without waking that loop's selector: the poll sleeps on until
something else wakes its loop (here: the hub's keep-alive, 5 s later). So ``wake_everyone``
wakes the running loop's hub itself and every other hub through ``call_soon_threadsafe``, and
skips hubs whose loop has closed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from notify.broker import cluster as cluster_broker
from notify.broker import redis as redis_broker
from notify.broker.redis import RedisBroker, RedisHub

# Where each RecordingHub.wake_everyone ran: (thread id, the loop running in it, or None).
calls: list[tuple[int, asyncio.AbstractEventLoop | None]] = []


def _where() -> tuple[int, asyncio.AbstractEventLoop | None]:
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    return threading.get_ident(), loop


class RecordingHub(RedisHub):
    def wake_everyone(self) -> int:
        calls.append(_where())
        return super().wake_everyone()


class RecordingBroker(RedisBroker):
    hub_class = RecordingHub


class FakeClusterHub:
    """Stands in for a ClusterHub: records where it is woken."""

    waiter_count = 1

    def __init__(self) -> None:
        self.woken = threading.Event()

    def wake_everyone(self) -> int:
        calls.append(_where())
        self.woken.set()
        return 1


class LoopThread:
    """An event loop running in a thread of its own, as a second server loop or a WSGI request's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="other-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def other_loop() -> Iterator[LoopThread]:
    calls.clear()
    other = LoopThread()
    yield other
    if not other.loop.is_closed():
        other.close()


@pytest.mark.system
async def test_a_hub_of_another_loop_is_woken_in_that_loop_and_its_poll_wakes_at_once(
    other_loop: LoopThread, redis_answers: None
) -> None:
    broker = RecordingBroker(settings.REDIS_URL, client_name=f"{settings.NOTIFY['CHANNEL_PREFIX']}:hub")
    channel = f"{settings.NOTIFY['CHANNEL_PREFIX']}:wake-test:{os.urandom(3).hex()}"
    listening = threading.Event()

    async def hold() -> tuple[bool, float]:
        """A held poll in the other loop: subscribed, confirmed, waiting (up to 10 s)."""
        async with broker.subscribe(channel) as subscription:
            assert await subscription.wait_ready(5)
            subscription.clear()  # as a poll does before its database check: forget earlier wake-ups
            listening.set()
            started = time.monotonic()
            woken = await subscription.wait(10)
            return woken, time.monotonic() - started

    held = asyncio.run_coroutine_threadsafe(hold(), other_loop.loop)
    try:
        assert await asyncio.to_thread(listening.wait, 10)
        woken_count = broker.wake_everyone()  # from this test's loop, in the main thread
        woken, waited = await asyncio.wrap_future(held)
    finally:
        hub = redis_broker._hubs.get(other_loop.loop)
        if hub is not None:
            other_loop.run(hub.aclose())

    assert calls == [(other_loop.thread.ident, other_loop.loop)]  # in the hub's loop, its thread
    assert woken and waited < 1, f"woken={woken} after {waited:.2f} s"
    assert woken_count >= 1


def test_a_cluster_hub_of_another_loop_is_woken_in_that_loop(other_loop: LoopThread) -> None:
    hub = FakeClusterHub()
    cluster_broker._hubs[other_loop.loop] = hub  # type: ignore[assignment]
    try:
        woken = cluster_broker.ClusterBroker("redis+cluster://127.0.0.1:7000").wake_everyone()
        assert hub.woken.wait(5)
    finally:
        cluster_broker._hubs.pop(other_loop.loop, None)
    assert calls == [(other_loop.thread.ident, other_loop.loop)]
    assert woken == 1


def test_hubs_of_closed_loops_are_left_alone(other_loop: LoopThread) -> None:
    other_loop.close()
    redis_broker._hubs[other_loop.loop] = RecordingHub(settings.REDIS_URL)
    try:
        woken = RecordingBroker(settings.REDIS_URL).wake_everyone()
    finally:
        redis_broker._hubs.pop(other_loop.loop, None)
    assert calls == []
    assert woken == 0
