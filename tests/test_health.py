"""Issue 15, item 4: /notify/health tells a load balancer whether this worker can hold polls
(docs/metrics.md): Redis confirms its subscriptions, the database answers, it is not draining.

Each server has a Redis of its own (tests/faults.py), stopped, frozen and started again.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from notify.conf import conf
from tests import threads
from tests.faults import OwnRedis
from tests.server import Response, Server


@pytest.fixture
def own_redis():
    own = OwnRedis().start()
    yield own
    own.stop()


def health_server(redis: OwnRedis, **notify: Any) -> Server:
    settings = {"HEALTH_TIMEOUT": 0.5, "UNSUBSCRIBE_DELAY": 0, **notify}
    return Server(
        env={
            "REDIS_URL": redis.url,
            "DJANGO_SETTINGS_MODULE": "tests.settings_ratelimits",
            "NOTIFY_TEST_SETTINGS": json.dumps(settings),
        }
    )


def health(server: Server) -> Response:
    reply = server.request("GET", "/notify/health", timeout=10)
    assert reply.headers.get("content-type") == "application/json", reply.headers
    assert reply.headers.get("cache-control") == "no-store", reply.headers
    return reply


def until_health(server: Server, status: int, timeout: float = 15) -> Response:
    deadline = time.monotonic() + timeout
    while True:
        reply = health(server)
        if reply.status == status or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


@pytest.mark.system  # a uvicorn worker, a Redis of its own
def test_health_flips_to_503_while_redis_is_down_and_back_when_it_returns(own_redis, make_user, token_for):
    """200 with every check passed, even while the worker holds as many polls as it may (the
    health check is not a poll); Redis killed: 503 naming "redis"; Redis back: 200 again."""
    server = health_server(own_redis, MAX_HELD_POLLS=1).start()
    try:
        token = token_for(make_user())
        cursor = server.poll(token).json()["cursor"]
        held = threads.start(server.poll, token, after=cursor, timeout=30)
        server.wait_for_held_polls(1)
        reply = health(server)
        assert reply.status == 200, reply.body
        assert reply.json() == {
            "status": "ok",
            "checks": {"redis": True, "database": True, "draining": False},
            "failed": [],
        }
        assert server.poll(token, after=cursor, timeout=1).status == 503  # the poll path is full

        own_redis.stop()
        server.wait_for(lambda state: state["connected"] is False, what="the hub lost Redis")
        reply = health(server)
        assert reply.status == 503, reply.body
        assert reply.json()["checks"] == {"redis": False, "database": True, "draining": False}
        assert reply.json()["failed"] == ["redis"]

        own_redis.start()
        reply = until_health(server, 200)
        assert reply.status == 200, reply.body
        server.process.send_signal(signal.SIGTERM)  # answers the held poll at once
        held.join(10)
    finally:
        server.stop()


@pytest.mark.system  # a uvicorn worker, a Redis of its own
def test_health_answered_during_a_drain_says_draining(own_redis):
    """SIGTERM while a health check is in flight (Redis frozen, so it waits for a confirmation
    that does not come): the answer is 503 and names "draining" as well as "redis". uvicorn stops
    accepting at SIGTERM, so this is the only kind of request a draining uvicorn still answers."""
    server = health_server(own_redis, HEALTH_TIMEOUT=1.5).start()
    try:
        assert health(server).status == 200
        server.wait_for(lambda state: state["subscribed"] == [], what="the health channel unsubscribed")
        own_redis.freeze()
        answers: list[Response] = []
        checking = threads.start(lambda: answers.append(health(server)))
        server.wait_for(
            lambda state: state["subscriptions"].get(conf.HEALTH_CHANNEL) == 1, what="the health check waiting"
        )
        server.process.send_signal(signal.SIGTERM)
        checking.join(10)
        [reply] = answers
        assert reply.status == 503, reply.body
        assert reply.json()["checks"] == {"redis": False, "database": True, "draining": True}
        assert reply.json()["failed"] == ["redis", "draining"]
        server.process.wait(10)
    finally:
        own_redis.thaw()
        server.stop()
