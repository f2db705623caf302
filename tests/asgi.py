"""The ASGI application the tests' uvicorn servers run: the demo's, plus one test-only route.

``GET /__tests__/state`` answers what this worker holds right now, read from
notify's own objects (the poll limiter, the brokers' subscriptions), so that a
test waits for "the poll is held and listening" instead of sleeping and hoping
(tests/server.py: ``Server.state()``, ``Server.wait_for_held_polls()``).

Costless for everything else: one string comparison per request; the state is
read only when asked for. Nothing test-only lives in notify/: this module reads
notify's internals, and is the one place to update when they change (a missing
attribute makes the route answer 500, and the waiting test fail, loudly).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

from project.asgi import application as project_application
from tests.server import STATE_PATH


async def application(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == STATE_PATH:
        body = json.dumps(state()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await project_application(scope, receive, send)


def _subscriptions() -> Iterator[Any]:
    """Every poll's Subscription in this process, whatever the broker (the auth listener excluded)."""
    from notify.broker import _brokers
    from notify.broker import cluster as cluster_broker
    from notify.broker import redis as redis_broker
    from notify.broker.memory import MemoryBroker

    found: list[Any] = []
    for broker in list(_brokers.values()):
        if isinstance(broker, MemoryBroker):
            with broker._lock:
                found += [subscription for waiters in broker._waiters.values() for _, subscription in waiters]
    hubs: list[Any] = list(redis_broker._hubs.values())
    for cluster_hub in list(cluster_broker._hubs.values()):
        hubs += list(cluster_hub._shards.values())
        found += list(cluster_hub._unrouted)
    for hub in hubs:
        found += [subscription for waiters in list(hub._waiters.values()) for subscription in waiters]
    return iter(found)


def _waiting(subscription: Any) -> bool:
    """The poll is inside ``subscription.wait()``: checked the database, now waiting for a wake-up."""
    waiter = subscription._woken._waiter
    return waiter is not None and not waiter.done()


def _subscribed_channels() -> tuple[list[str], bool | None]:
    """Channels SUBSCRIBEd on Redis by this process's hubs (the auth channel left out), and
    whether every hub is connected (None: no Redis hub)."""
    from notify.broker import cluster as cluster_broker
    from notify.broker import redis as redis_broker

    hubs: list[Any] = list(redis_broker._hubs.values())
    for cluster_hub in list(cluster_broker._hubs.values()):
        hubs += list(cluster_hub._shards.values())
    channels = {channel for hub in hubs for channel in hub._subscribed}
    connected = all(hub.connected for hub in hubs) if hubs else None
    return sorted(channels), connected


def state() -> dict[str, Any]:
    """What this worker holds. Runs in the server's event loop: no await, so it reads one instant.

    ``held``/``held_by_user``: polls counted by the limiter (notify.limits), from the
    moment a poll is admitted until it is answered. ``waiting``/``listening`` by channel:
    subscriptions of polls inside their wait (after their database check), and of those
    the ones whose SUBSCRIBE Redis has confirmed (a publish now wakes them). Every held
    poll, topic and multi-stream ones too, subscribes its user's channel, so
    ``users[id]`` gives, per user, held polls and how many of them wait / listen.
    """
    from notify.conf import conf
    from notify.limits import poll_limiter

    asyncio.get_running_loop()  # in the server's loop, where the subscriptions live
    subscriptions = list(_subscriptions())
    count: Counter[str] = Counter(s.channel for s in subscriptions)
    waiting: Counter[str] = Counter(s.channel for s in subscriptions if _waiting(s))
    listening: Counter[str] = Counter(s.channel for s in subscriptions if _waiting(s) and s.ready.is_set())
    with poll_limiter._lock:
        held_by_user = dict(poll_limiter._held)
        held = poll_limiter._total
    users = {}
    for user_id, polls in held_by_user.items():
        channel = conf.channel_for_user(user_id)
        users[str(user_id)] = {"held": polls, "waiting": waiting[channel], "listening": listening[channel]}
    user_channel = conf.channel_for_user(0)[:-1]  # "<prefix>:user:"
    subscribed, connected = _subscribed_channels()
    return {
        "pid": os.getpid(),
        "held": held,
        "waiting_polls": sum(n for channel, n in waiting.items() if channel.startswith(user_channel)),
        "listening_polls": sum(n for channel, n in listening.items() if channel.startswith(user_channel)),
        "users": users,
        "subscriptions": dict(count),
        "waiting": dict(waiting),
        "listening": dict(listening),
        "subscribed": subscribed,
        "connected": connected,
    }
