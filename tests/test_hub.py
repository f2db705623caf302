"""One pub/sub connection per worker, channels that come and go with their waiters, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import notify
from tests import threads
from tests.conftest import hub_clients, poll_channels
from tests.server import Server, expect_error, expect_page, free_port


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
    # Each user's channel, and the announcements' that every inbox poll follows: once.
    assert eventually(lambda: subscribed_channels(redis_client) == 30 + 1)
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
        assert eventually(lambda: subscribed_channels(redis_client) == 2)  # alice's and the announcements'
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
    assert eventually(lambda: subscribed_channels(redis_client) == 2)  # alice's and the announcements'
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


class RedisLink:
    """A TCP relay to Redis that the test can cut (connections dropped, new ones refused) and restore."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> RedisLink:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        for sock in [listener, *sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.upstream)
            except OSError:
                return  # cut
            with self._lock:
                self._sockets |= {client, upstream}
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def test_a_poll_is_woken_to_recheck_as_soon_as_its_channel_is_subscribed_again(
    make_user, token_for, redis_client, django_db_blocker
):
    """What was committed while the hub was deaf arrives once it is subscribed again, not at the next
    RECHECK_INTERVAL (30 s here): the confirmation of the new SUBSCRIBE wakes the poll to re-check."""
    from django.conf import settings

    url = redis.connection.parse_url(settings.REDIS_URL)
    link = RedisLink((url.get("host", "127.0.0.1"), url.get("port", 6379))).start()
    with django_db_blocker.unblock():
        own = Server(env={"NOTIFY_REDIS_URL": f"redis://127.0.0.1:{link.port}/0", "NOTIFY_RECHECK_INTERVAL": "30"})
        own.start()
    try:
        alice = make_user()
        token = token_for(alice)
        cursor = own.poll(token).json()["cursor"]
        answers: list = []
        poller = threads.start(lambda: answers.append(own.poll(token, after=cursor, timeout=25)))
        own.wait_for_held_polls(1, alice.pk)
        link.cut()
        # The hub saw the drop; the poll re-checked (nothing yet) and waits again, deaf.
        own.wait_for(
            lambda state: state["connected"] is False and state["users"].get(str(alice.pk), {}).get("waiting") == 1,
            what="the poll waiting again after the hub lost Redis",
        )
        notify.send(alice, "committed while the hub was deaf")  # its publish reaches nobody
        link.start()
        restored = time.monotonic()
        poller.join(15)
        expect_page(answers[0], cursor, ["committed while the hub was deaf"])
        # The hub's reconnect backoff is under a second here; the next re-check would be at 30 s.
        assert time.monotonic() - restored < 8
    finally:
        link.cut()
        own.stop()


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


async def test_a_hub_cancelled_while_one_of_its_tasks_fails_stops_instead_of_reconnecting():
    """Closing a hub ends it although a child task fails as the hub is cancelled: a TaskGroup then
    raises the failure and drops the CancelledError, which the hub took for a lost connection, and
    it reconnected for ever, so aclose() never returned. (On Python 3.11, redis-py's write, under
    asyncio.wait_for, can also swallow a cancellation that arrives as it completes.)"""
    from notify.broker.base import Subscription
    from notify.broker.redis import RedisHub
    from notify.conf import conf

    keepalive_started = asyncio.Event()
    failed: list[bool] = []

    connects: list[bool] = []

    class FailsWhenCancelled(RedisHub):
        async def _connect(self, connection) -> None:  # type: ignore[no-untyped-def]
            connects.append(True)
            await super()._connect(connection)

        async def _keepalive(self, connection: object) -> None:
            keepalive_started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if not failed:  # once: a second cancel ends a runaway hub, so the test fails, not hangs
                    failed.append(True)
                    raise RuntimeError("a child task failing while the hub is cancelled") from None
                raise

    hub = FailsWhenCancelled(conf.REDIS_URL)
    hub._add(Subscription("notify-test-hub-cancel"))  # starts the hub's task on this loop
    async with asyncio.timeout(5):
        await keepalive_started.wait()
    task = hub._task
    assert task is not None
    closing = asyncio.create_task(hub.aclose())
    await asyncio.wait({closing}, timeout=5)
    stopped = closing.done()
    if not stopped:
        task.cancel()
        await asyncio.wait({closing}, timeout=5)
    assert stopped, "the hub went on (reconnected) after aclose() cancelled it"
    assert len(connects) == 1 and not hub.connected  # never reconnected


async def test_a_hub_closed_while_a_write_swallows_the_cancellation_still_stops():
    """On Python 3.11, asyncio.wait_for (redis-py's write under socket_timeout) returns normally when
    the cancellation arrives as the write completes; the hub's writer must still stop on aclose()."""
    from notify.broker.base import Subscription
    from notify.broker.redis import RedisHub
    from notify.conf import conf

    in_send = asyncio.Event()

    class SwallowsCancellation(RedisHub):
        async def _send(self, *args: Any) -> None:
            await super()._send(*args)
            in_send.set()
            with contextlib.suppress(asyncio.CancelledError):  # what wait_for does in that case
                await asyncio.Event().wait()

    hub = SwallowsCancellation(conf.REDIS_URL)
    hub._add(Subscription("notify-test-hub-swallow"))
    async with asyncio.timeout(5):
        await in_send.wait()
    closing = asyncio.create_task(hub.aclose())
    await asyncio.wait({closing}, timeout=5)
    assert closing.done(), "the hub's writer went on after aclose() cancelled it"
