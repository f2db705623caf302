"""The figures of the admin's live dashboard: each worker publishes its own to a reserved topic.

While a staff user has the dashboard open (its page was served, or a poll of the topic
was let in, within the last WATCH_SECONDS: a key in Redis, and in this process), every
worker process publishes one small message every ``NOTIFY["DASHBOARD_INTERVAL"]``
seconds to the topic ``notify-ops:dashboard``: its held polls, the held polls it
answered per second, the delivery latency of those it woke (p50/p99, from the publish
stamps that only ``NOTIFY["METRICS"]`` adds), its Redis hub and whether it is draining.
Nobody watching: the loop asks Redis once per interval, and the poll path does one
boolean test per answered held poll.

Topics named ``notify-ops:...`` are notify's own (notify.topics.RESERVED_PREFIX): staff
users may read them whatever NOTIFY["TOPIC_PERMISSION"] says, nobody may post to them,
and the dashboard's keeps only its last KEEP messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from asgiref.sync import sync_to_async

from notify import lifecycle, metrics
from notify.conf import conf

logger = logging.getLogger("notify")

TOPIC = "notify-ops:dashboard"
# Seconds the dashboard counts as open after its page was served or a poll of it let in
# (a poll of the topic is re-let in at least every MAX_TIMEOUT, at most 60 s).
WATCH_SECONDS = 90
# Messages the dashboard's topic keeps (notify.topics.retention_for).
KEEP = 200
# Latencies kept between two messages: the percentiles of a busy worker are those of its
# last LATENCY_WINDOW deliveries of the interval.
LATENCY_WINDOW = 2048
# Sent announcements each message lists, newest first.
BROADCASTS = 5

Publish = Callable[[str, dict[str, Any]], Awaitable[Any]]

HOST = socket.gethostname()[:64]


class _Counts:
    """What the poll path counts for the dashboard, in this process, while it is watched."""

    def __init__(self) -> None:
        self.on = False  # the only thing the poll path reads while nobody watches
        self.answered = 0
        self.woken = 0  # answered with news it waited for: deliveries
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def take(self) -> tuple[int, int, list[float]]:
        answered, woken, latencies = self.answered, self.woken, list(self.latencies)
        self.answered = self.woken = 0
        self.latencies.clear()
        return answered, woken, latencies


counts = _Counts()
_watched_until = 0.0  # monotonic: a watch seen in this process (the memory broker's, or Redis failing)
_written_at = -1e9  # monotonic: when this process last marked the watch in Redis


def held_poll_answered(
    news: bool, waited: bool, heard: Iterable[Iterable[bytes | str]], followed: Iterable[tuple[Any, Any]]
) -> None:
    """A held poll answered (notify.polling): counted while the dashboard is watched, unless it
    follows the dashboard's topic (the dashboard would count its own polls, woken by its figures)."""
    if not counts.on or any(stream.name == TOPIC for stream, _ in followed):
        return
    counts.answered += 1
    if news and waited:
        counts.woken += 1
        published = metrics.earliest_stamp(heard)
        if published is not None:
            counts.latencies.append(max(0.0, time.time() - published))


# Who may open the dashboard (the admin view) and read its topic, besides being active staff.
PERMISSION = "notify.view_broadcast"


def allowed(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(PERMISSION))


def reads(user: Any, topic: str, action: str) -> bool:
    """notify.topics.permitted for a reserved topic: the dashboard's, to read, for ``allowed``
    users (and it is watched from then on); nothing else."""
    if topic != TOPIC or action != "read" or not allowed(user):
        return False
    watch()
    return True


def _key() -> str:
    return f"{conf.CHANNEL_PREFIX}:dashboard:watched"


def watch() -> None:
    """The dashboard is open: every worker publishes its figures for WATCH_SECONDS. Synchronous
    (the admin view, and notify.topics.permitted in notify.db's threads). Redis is written at
    most every WATCH_SECONDS / 3 per process, and not for 10 s after it failed: the dashboard's
    polls must not wait on a Redis that does not answer."""
    global _watched_until, _written_at
    now = time.monotonic()
    _watched_until = now + WATCH_SECONDS
    if conf.BROKER != "redis" or now - _written_at < WATCH_SECONDS / 3:
        return
    from notify.ratelimit import _redis

    _written_at = now
    try:
        _redis.client().set(_key(), b"1", ex=WATCH_SECONDS)
    except Exception as error:  # noqa: BLE001 - then only this process publishes
        _written_at = now - WATCH_SECONDS / 3 + 10
        logger.warning("notify: could not mark the dashboard watched in Redis (%s)", error)


def _watched_in_redis(client: Any) -> bool:
    return bool(client.exists(_key()))


async def watched() -> bool:
    if time.monotonic() < _watched_until:
        return True
    if conf.BROKER != "redis":
        return False
    from notify.ratelimit import _FAILED, _redis

    answer = await _redis.call(_watched_in_redis)
    return answer is not _FAILED and bool(answer)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of non-empty ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def redis_status() -> str:
    """This worker's pub/sub hub: "connected", "disconnected", "idle" (none yet: a worker makes
    its hub for its first held poll), or "memory" (no Redis). Makes no hub."""
    if conf.BROKER == "memory":
        return "memory"
    loop = asyncio.get_running_loop()
    for module in ("notify.broker.redis", "notify.broker.cluster"):
        hubs = getattr(sys.modules.get(module), "_hubs", None)
        hub = None if hubs is None else hubs.get(loop)
        if hub is not None:
            return "connected" if hub.connected else "disconnected"
    return "idle"


def recent_broadcasts() -> list[dict[str, Any]]:
    """The last BROADCASTS sent announcements (notify.admin's Broadcast): what each went out to."""
    from notify.models import Broadcast

    rows = Broadcast.objects.filter(sent_at__isnull=False).order_by("-sent_at")[:BROADCASTS]
    return [
        {
            "id": row.pk,
            "title": row.title[:80],
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            "recipients": row.recipient_count,
        }
        for row in rows.only("pk", "title", "sent_at", "recipient_count")
    ]


def figures(seconds: float) -> dict[str, Any]:
    """This worker's message: what it counted over the last ``seconds``."""
    from notify.limits import poll_limiter

    answered, woken, latencies = counts.take()
    latency: dict[str, float | None] = {"p50_ms": None, "p99_ms": None}
    if latencies:
        latency = {
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        }
    return {
        "worker": f"{HOST}:{os.getpid()}",
        "held": poll_limiter.held,
        "answered_per_s": round(answered / seconds, 2) if seconds > 0 else 0.0,
        "delivered_per_s": round(woken / seconds, 2) if seconds > 0 else 0.0,
        **latency,
        "metrics": conf.METRICS,
        "redis": redis_status(),
        "draining": lifecycle.draining(),
    }


async def run(apublish: Publish) -> None:
    """Publish this worker's figures with ``apublish`` (notify.topics.apublish) every
    DASHBOARD_INTERVAL while the dashboard is watched. Runs for the life of the worker
    (notify.asgi starts it at lifespan startup)."""
    last = time.monotonic()
    while not lifecycle.draining():
        await asyncio.sleep(conf.DASHBOARD_INTERVAL)
        try:
            if not await watched():
                counts.on = False
                counts.take()
                continue
            now = time.monotonic()
            if not counts.on:  # the first interval watched: nothing was counted before it
                counts.on, last = True, now
            message = figures(now - last)
            message["broadcasts"] = await sync_to_async(recent_broadcasts)()
            await apublish(TOPIC, message)
            last = now
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("notify: the dashboard's figures could not be published; trying again")


_task: asyncio.Task[None] | None = None


def start(apublish: Publish) -> None:
    """Start ``run`` on the running loop, once per process."""
    global _task
    if _task is None or _task.done():
        _task = asyncio.get_running_loop().create_task(run(apublish), name="notify-dashboard")


async def stop() -> None:
    global _task
    if _task is not None:
        _task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await _task
        _task = None
