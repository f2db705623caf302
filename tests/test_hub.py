"""One pub/sub connection per worker, channels that come and go with their waiters, reconnects."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import pytest
import redis

import notify
from tests.conftest import hub_clients, poll_channels
from tests.server import expect_error


def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def subscribed_channels(redis_client) -> int:
    return sum(poll_channels(client) for client in hub_clients(redis_client))


def test_one_pubsub_connection_serves_every_held_poll(server, make_user, token_for, redis_client):
    users = [make_user() for _ in range(30)]
    tokens = [token_for(user) for user in users]
    cursors = [server.poll(token).json()["cursor"] for token in tokens]
    answers: list[list[str]] = []

    def hold(token: str, cursor: str) -> None:
        page = server.poll(token, after=cursor, timeout=15).json()
        answers.append([n["title"] for n in page["notifications"]])

    threads = [threading.Thread(target=hold, args=pair) for pair in zip(tokens, cursors, strict=True)]
    for thread in threads:
        thread.start()
    assert eventually(lambda: subscribed_channels(redis_client) == 30)
    assert len(hub_clients(redis_client)) == 1  # not one connection per held request

    notify.send(users, "to everyone")
    for thread in threads:
        thread.join(30)
    assert answers == [["to everyone"]] * 30
    # The last waiter of each channel left, so the channel was unsubscribed.
    assert eventually(lambda: subscribed_channels(redis_client) == 0)


def open_raw_poll(server, token: str, cursor: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        f"GET /notify/poll?after={cursor}&timeout=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def test_clients_that_go_away_free_their_waiters_and_subscriptions(server, make_user, token_for, redis_client):
    alice = make_user()
    token = token_for(alice)
    cursor = server.poll(token).json()["cursor"]
    for _ in range(5):
        sockets = [open_raw_poll(server, token, cursor) for _ in range(10)]
        server.wait_for_held_polls(10, alice.pk)  # all ten held and listening
        assert eventually(lambda: subscribed_channels(redis_client) == 1)
        for sock in sockets:
            sock.close()
        server.wait_for_held_polls(0, alice.pk)  # their waiters and slots freed
        assert eventually(lambda: subscribed_channels(redis_client) == 0)
    # Their per-user poll slots were given back too: ten may be held again.
    sockets = [open_raw_poll(server, token, cursor) for _ in range(10)]
    try:
        server.wait_for_held_polls(10, alice.pk)
        expect_error(server.poll(token, after=cursor, timeout=0), 429, "too_many_polls")
    finally:
        for sock in sockets:
            sock.close()
    assert eventually(lambda: subscribed_channels(redis_client) == 0)


def test_lost_pubsub_connection_reconnects_and_delivers_what_was_missed(server, make_user, token_for, redis_client):
    alice = make_user()
    token = token_for(alice)
    cursor = server.poll(token).json()["cursor"]
    result: list[dict] = []
    poller = threading.Thread(target=lambda: result.append(server.poll(token, after=cursor, timeout=20).json()))
    poller.start()
    assert eventually(lambda: subscribed_channels(redis_client) == 1)
    [hub] = hub_clients(redis_client)

    redis_client.client_kill_filter(_id=hub["id"])
    notify.send(alice, "sent while the hub was down")  # its publish reaches no subscriber
    started = time.monotonic()
    poller.join(20)

    assert [n["title"] for n in result[0]["notifications"]] == ["sent while the hub was down"]
    # Delivered by the re-check after reconnecting, well before the 20 s timeout.
    assert time.monotonic() - started < 5
    assert eventually(lambda: len(hub_clients(redis_client)) == 1)
    assert hub_clients(redis_client)[0]["id"] != hub["id"]


def server_threads(server) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/task"))


def test_held_polls_cost_no_thread_each(server, make_user, token_for):
    """Served by notify.asgi.LongPollRouter: a held poll is a coroutine, not a thread."""
    from notify.conf import conf

    users = [make_user() for _ in range(40)]
    tokens = [token_for(user) for user in users]
    cursors = [server.poll(token).json()["cursor"] for token in tokens]
    before = server_threads(server)
    answers: list = []
    threads = [
        threading.Thread(target=lambda t=token, c=cursor: answers.append(server.poll(t, after=c, timeout=20)))
        for token, cursor in zip(tokens, cursors, strict=True)
    ]
    for thread in threads:
        thread.start()
    for user in users:
        server.wait_for_held_polls(1, user.pk)  # all forty held, listening
    during = server_threads(server)
    notify.send(users, "to all forty")
    for thread in threads:
        thread.join(10)
    assert [[n["title"] for n in reply.json()["notifications"]] for reply in answers] == [["to all forty"]] * 40
    # At most the shared database threads may have started; never one per poll.
    assert during - before <= conf.DB_THREADS
    assert during < 40


def test_a_session_whose_password_changed_no_longer_authenticates(server, make_user, session_cookie):
    alice = make_user()
    cookie = session_cookie(alice)
    assert server.poll(cookies=cookie).status == 200
    alice.set_password("a new one")
    alice.save()
    expect_error(server.poll(cookies=cookie), 401, "not_authenticated")


async def test_asyncio_redis_clients_clean_up_after_a_failed_connect_and_do_not_retry(monkeypatch, caplog):
    """The pub/sub hubs, the cluster's slot-map look-up and the sentinel watch use redis-py's asyncio
    clients with "no retry: reconnecting is notify's job". redis-py runs that policy with ``await``; the
    synchronous ``redis.retry.Retry`` ran the connect outside its own ``try``, so redis-py's clean-up after
    a failure (disconnect, with the error) was skipped. Against a real refused connection (port 1)."""
    from redis.asyncio.connection import Connection

    from notify.broker.cluster import ClusterHub
    from notify.broker.redis import RedisHub
    from notify.broker.sentinel import SentinelHub

    attempts: list[int] = []
    cleanups: list[type[BaseException]] = []
    real_connect, real_disconnect = Connection._connect, Connection.disconnect

    async def connect(self: Connection) -> None:
        attempts.append(self.port)
        await real_connect(self)

    async def disconnect(self: Connection, *args: object, **kwargs: object) -> None:
        if kwargs.get("error") is not None:
            cleanups.append(type(kwargs["error"]))
        await real_disconnect(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "_connect", connect)
    monkeypatch.setattr(Connection, "disconnect", disconnect)

    hub = RedisHub("redis://127.0.0.1:1/0")
    with pytest.raises(redis.ConnectionError):
        await hub._connect(hub._pool.make_connection())
    await hub.aclose()
    assert (attempts, cleanups) == ([1], [redis.ConnectionError])

    attempts.clear(), cleanups.clear()
    with pytest.raises(redis.ConnectionError):
        await ClusterHub("redis+cluster://127.0.0.1:1")._fetch_slot_map()
    assert (attempts, cleanups) == ([1], [redis.ConnectionError])

    attempts.clear(), cleanups.clear()
    sentinel = SentinelHub("redis+sentinel://127.0.0.1:1/mymaster")
    watch = asyncio.create_task(sentinel._follow_switches(sentinel._pool.make_connection()))
    try:
        with caplog.at_level(logging.INFO, logger="notify"):
            async with asyncio.timeout(5):
                while "trying the next one" not in caplog.text:  # then it waits a second and asks again
                    await asyncio.sleep(0.01)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await sentinel.aclose()
    assert (attempts, cleanups) == ([1], [redis.ConnectionError])
