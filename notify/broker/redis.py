"""Redis pub/sub: one connection per worker event loop, shared by all held polls.

Each held poll registers a ``Subscription`` with the loop's ``RedisHub``. The hub
keeps one SUBSCRIBE per channel that has local waiters, batches SUBSCRIBE and
UNSUBSCRIBE commands, and sets a subscription's ``ready`` only when Redis has
answered the SUBSCRIBE that covers it. If the connection drops, every held poll
is told to fall back to re-checking the database, and when the hub is back (it
reconnects by itself, with backoff) every poll is woken to re-check once more:
an outage costs latency, never a notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from notify import metrics
from notify.broker.base import Flag, Hub, Subscription

logger = logging.getLogger("notify.broker")

# Channels named in one SUBSCRIBE or UNSUBSCRIBE command.
COMMAND_BATCH = 1000


class RedisHub(Hub):
    """The pub/sub connection of one event loop.

    The command names and reply kinds are class attributes so that the Redis
    Cluster hub (notify.broker.cluster) runs the same machinery with SSUBSCRIBE,
    SUNSUBSCRIBE and ``smessage`` on each shard.
    """

    SUBSCRIBE = "SUBSCRIBE"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    MESSAGE_KIND = b"message"
    SUBSCRIBE_KIND = b"subscribe"

    def __init__(
        self,
        url: str,
        *,
        client_name: str | None = None,
        unsubscribe_delay: float = 0.0,
        ping_interval: float = 5.0,
        connect_timeout: float = 2.0,
        max_backoff: float = 5.0,
        auth_channel: str | None = None,
        on_auth: Callable[[bytes], None] | None = None,
    ) -> None:
        self.url = url
        self.unsubscribe_delay = unsubscribe_delay
        self.ping_interval = ping_interval
        self.max_backoff = max_backoff
        self._pool = redis.asyncio.ConnectionPool.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_keepalive=True,
            # Named, so that CLIENT LIST shows which connection is the hub.
            client_name=client_name,
            # RESP2: pub/sub messages arrive as plain replies. Under RESP3 (redis-py's
            # default) they are push frames that read_response() passes by.
            protocol=2,
            # Reconnecting is this class's job: redis-py must not retry (and so
            # resubscribe) behind our back, or we would not know to re-check. The
            # asyncio Retry: redis-py awaits the connect inside it (a sync one
            # returns the coroutine unawaited and skips redis-py's clean-up).
            retry=AsyncRetry(NoBackoff(), 0),
        )
        # Held polls by channel. A channel is subscribed while it has one.
        self._waiters: dict[str, set[Subscription]] = {}
        # The process-wide auth channel, subscribed on every connection for as long as
        # the hub lives, on the same connection as the held polls' channels: that shared
        # connection is what orders its messages before anything published after them.
        # Its messages go to on_auth; each confirmation of its SUBSCRIBE starts a new
        # epoch (a new object), losing the connection ends it (None): whoever listens
        # knows it heard every message published during an epoch (notify.auth.trust).
        self._auth_channel = auth_channel if on_auth is not None else None
        self._on_auth = on_auth
        self._auth_epoch: object | None = None
        self._auth_due = False  # the auth channel's SUBSCRIBE is yet to be sent on this connection
        # Channels with a SUBSCRIBE sent on this connection and no UNSUBSCRIBE since.
        self._subscribed: set[str] = set()
        # Channels that may need a SUBSCRIBE: the writer looks only at these, not
        # at every channel with waiters (thousands, each time it wakes).
        self._pending: set[str] = set()
        # Channels whose last waiter left, and when, oldest first. They stay
        # subscribed for unsubscribe_delay seconds: a client re-polls the moment it
        # is answered, and its next poll then costs no SUBSCRIBE round trip.
        self._idle: dict[str, float] = {}
        # For each SUBSCRIBE sent and not yet answered, in order: the polls its
        # answer makes ready. Redis answers every SUBSCRIBE of a channel once.
        self._replies_due: dict[str, deque[list[Subscription]]] = {}
        # When each SUBSCRIBE was sent (the latest, by channel): notify_redis_confirm_seconds.
        self._sent_at: dict[str, float] = {}
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # set by aclose(): the hub's task must end, not reconnect
        self._last_read = 0.0
        self.connected = False

    # --- what held polls call ------------------------------------------------

    def _add(self, subscription: Subscription) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="notify-redis-hub")
        channel = subscription.channel
        self._waiters.setdefault(channel, set()).add(subscription)
        self._idle.pop(channel, None)
        if channel not in self._subscribed:
            self._pending.add(channel)
            self._dirty.set()
        elif due := self._replies_due.get(channel):
            due[-1].append(subscription)  # the SUBSCRIBE in flight covers it
        else:
            subscription.ready.set()

    def _remove(self, subscription: Subscription) -> None:
        waiters = self._waiters.get(subscription.channel)
        if waiters is None:
            return
        waiters.discard(subscription)
        if not waiters:
            del self._waiters[subscription.channel]
            self._idle[subscription.channel] = asyncio.get_running_loop().time()
            self._dirty.set()

    def resubscribe_missing(self) -> None:
        """Queue a SUBSCRIBE for every channel with waiters that is not subscribed."""
        self._pending.update(channel for channel in self._waiters if channel not in self._subscribed)
        self._dirty.set()

    def wake_everyone(self) -> int:
        woken = 0
        for waiters in self._waiters.values():
            for subscription in waiters:
                subscription.wake()
                woken += 1
        return woken

    @property
    def auth_epoch(self) -> object | None:
        """The current epoch of the auth channel's subscription, or None (see ``__init__``)."""
        return self._auth_epoch

    @property
    def channel_count(self) -> int:
        """Channels of held polls subscribed on Redis (or about to be)."""
        return len(self._subscribed)

    @property
    def waiter_count(self) -> int:
        return sum(len(waiters) for waiters in self._waiters.values())

    async def aclose(self) -> None:
        if self._task is not None:
            self._closing = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._pool.aclose()

    # --- the connection --------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            connection = self._pool.make_connection()
            try:
                await self._connect(connection)
                self._start_connection()
                backoff = 0.1
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._read(connection))
                    tasks.create_task(self._write(connection))
                    tasks.create_task(self._keepalive(connection))
            except Exception as error:  # noqa: BLE001 - any failure means: reconnect
                if self._closing:
                    # aclose() cancelled the hub while a child failed: the TaskGroup raised the
                    # failure and dropped the CancelledError. Stop as cancelled, not reconnect.
                    # (Not task.cancelling(): on Python 3.11 the TaskGroup's own cancel of its
                    # parent, after a child's failure, is never uncancelled.)
                    raise asyncio.CancelledError from error
                # Name the cause, not the TaskGroup that carried it.
                while isinstance(error, ExceptionGroup) and len(error.exceptions) == 1:
                    error = error.exceptions[0]
                where = getattr(connection, "path", None) or f"{connection.host}:{connection.port}"
                logger.warning(
                    "notify: Redis pub/sub connection lost (%s: %s: %s); reconnecting",
                    where,
                    type(error).__name__,
                    error,
                )
            finally:
                self._end_connection()
                await connection.disconnect(nowait=True)
            # Full jitter, so that many workers do not reconnect in step.
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, self.max_backoff)

    async def _connect(self, connection: redis.asyncio.Connection) -> None:
        await connection.connect()

    def _start_connection(self) -> None:
        self._subscribed.clear()
        self._idle.clear()  # nothing is subscribed on a new connection
        self._replies_due.clear()
        self._last_read = asyncio.get_running_loop().time()
        self.connected = True
        metrics.hub_connected()
        self._auth_due = self._auth_channel is not None
        self.resubscribe_missing()  # every channel that has waiters, on the new connection

    def _end_connection(self) -> None:
        was_connected, self.connected = self.connected, False
        metrics.hub_disconnected(was_connected, self._closing, len(self._subscribed))
        self._auth_epoch = None  # messages may be missed from now on
        self._subscribed.clear()
        self._replies_due.clear()
        self._sent_at.clear()
        # Messages published from now on are missed: every held poll falls back
        # to re-checking the database until its subscription is confirmed again.
        for waiters in self._waiters.values():
            for subscription in waiters:
                subscription.ready.clear()
                if was_connected:
                    subscription.wake()

    async def _read(self, connection: redis.asyncio.Connection) -> None:
        loop = asyncio.get_running_loop()
        message_kind, subscribe_kind = self.MESSAGE_KIND, self.SUBSCRIBE_KIND
        while True:
            response = await connection.read_response(timeout=math.inf)
            self._last_read = loop.time()
            if not isinstance(response, list) or len(response) < 3:
                continue  # PONG outside subscribed mode
            kind, channel = response[0], response[1].decode()
            if channel == self._auth_channel:
                if kind == message_kind:
                    self._on_auth(response[2])  # type: ignore[misc]  # set whenever the auth channel is
                elif kind == subscribe_kind:
                    self._auth_epoch = object()
            elif kind == message_kind:
                for subscription in self._waiters.get(channel, ()):
                    subscription.wake(response[2])
            elif kind == subscribe_kind:
                due = self._replies_due.get(channel)
                if channel in self._sent_at:
                    metrics.subscribe_confirmed(time.perf_counter() - self._sent_at.pop(channel))
                if due:
                    for subscription in due.popleft():
                        subscription.ready.set()
                        # It may have been waiting through an outage: re-check.
                        subscription.wake()
                    if not due:
                        del self._replies_due[channel]
            else:
                self._other_reply(kind, channel)

    def _other_reply(self, kind: bytes, channel: str) -> None:
        """Replies other than messages and subscribe confirmations (UNSUBSCRIBE's)."""

    async def _write(self, connection: redis.asyncio.Connection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Sleep until there is work, or until the oldest idle channel is due.
            due = next(iter(self._idle.values()), None)
            try:
                async with asyncio.timeout(None if due is None else due + self.unsubscribe_delay - loop.time()):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            self._dirty.clear()
            expired = []
            now = loop.time()
            for channel, since in self._idle.items():
                if since + self.unsubscribe_delay > now:
                    break
                expired.append(channel)
            for channel in expired:
                del self._idle[channel]
            to_unsubscribe = [ch for ch in expired if ch in self._subscribed]
            to_subscribe = [ch for ch in self._pending if ch in self._waiters and ch not in self._subscribed]
            self._pending.clear()
            self._subscribed.difference_update(to_unsubscribe)
            sent = time.perf_counter()  # loop.time() may count whole milliseconds (uvloop)
            for channel in to_subscribe:
                self._subscribed.add(channel)
                self._sent_at[channel] = sent
                pending = [s for s in self._waiters[channel] if not s.ready.is_set()]
                self._replies_due.setdefault(channel, deque()).append(pending)
            metrics.hub_channels(len(to_subscribe) - len(to_unsubscribe))
            if self._auth_due and self._auth_channel is not None:
                self._auth_due = False
                to_subscribe.insert(0, self._auth_channel)  # first: its epoch starts before any poll's
            await self._send(connection, to_unsubscribe, to_subscribe)
            if self._closing:
                # Python 3.11's asyncio.wait_for (redis-py's write under socket_timeout) returns the
                # result and drops a cancellation that arrives as the write completes (fixed in 3.12):
                # honour it here, or the hub is never stopped.
                raise asyncio.CancelledError

    async def _send(
        self, connection: redis.asyncio.Connection, to_unsubscribe: list[str], to_subscribe: list[str]
    ) -> None:
        for start in range(0, len(to_unsubscribe), COMMAND_BATCH):
            await connection.send_command(self.UNSUBSCRIBE, *to_unsubscribe[start : start + COMMAND_BATCH])
        for start in range(0, len(to_subscribe), COMMAND_BATCH):
            await connection.send_command(self.SUBSCRIBE, *to_subscribe[start : start + COMMAND_BATCH])

    async def _keepalive(self, connection: redis.asyncio.Connection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ping_interval)
            if loop.time() - self._last_read > 2 * self.ping_interval:
                raise ConnectionError(f"no answer from Redis for {2 * self.ping_interval:.0f} s")
            await connection.send_command("PING")


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisHub] = weakref.WeakKeyDictionary()


class _Wakeable(Protocol):
    @property
    def waiter_count(self) -> int: ...

    def wake_everyone(self) -> int: ...


def wake_hubs(hubs: Mapping[asyncio.AbstractEventLoop, _Wakeable]) -> int:
    """Wake every subscription of ``hubs``, each hub in its own loop; return how many.

    A hub's subscriptions wait on futures of its loop, which only that loop's thread
    may resolve: a hub of the running loop is woken here, any other through its loop
    (the server's shutdown runs in the server's loop; a WSGI request's loop is another
    thread's). Hubs of closed loops have nobody waiting.
    """
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    woken = 0
    for loop, hub in list(hubs.items()):
        if loop is running:
            woken += hub.wake_everyone()
            continue
        if loop.is_closed():
            continue
        # Read from another thread: a figure for the log, nothing is decided on it.
        waiting = 0
        with contextlib.suppress(RuntimeError):  # its waiters changed size meanwhile
            waiting = hub.waiter_count
        try:
            loop.call_soon_threadsafe(hub.wake_everyone)
        except RuntimeError:  # closed meanwhile
            continue
        woken += waiting
    return woken


def hub_for_running_loop(url: str, hub_class: type[RedisHub] = RedisHub, **options: object) -> RedisHub:
    """The hub of the running event loop (one per worker under ASGI).

    Keyed by loop because a redis.asyncio connection works only in the loop that
    made it: under WSGI every request runs in a loop of its own, and gets a hub
    of its own that dies with that loop.
    """
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.url != url:
        if hub is not None:
            loop.create_task(hub.aclose())
        hub = _hubs[loop] = hub_class(url, **options)  # type: ignore[arg-type]  # Redis keyword options
    return hub


class RedisBroker:
    hub_class: type[RedisHub] = RedisHub

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 1000,
        client_name: str | None = None,
        unsubscribe_delay: float = 0.0,
        auth_channel: str | None = None,
        on_auth: Callable[[bytes], None] | None = None,
    ) -> None:
        self.url = url
        self.batch_size = batch_size
        self.hub_options = {
            "client_name": client_name,
            "unsubscribe_delay": unsubscribe_delay,
            "auth_channel": auth_channel,
            "on_auth": on_auth,
        }
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self.url,
                    socket_timeout=2.0,
                    socket_connect_timeout=1.0,
                    # One immediate retry: a pooled connection may be stale after a
                    # Redis restart. Never a long wait: the sender is waiting.
                    retry=Retry(NoBackoff(), 1),
                )
            return self._client

    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        # One connection, in order: an auth-channel message queued before a user's
        # channel message is published before it (notify.auth relies on that).
        for start in range(0, len(messages), self.batch_size):
            with self.client.pipeline(transaction=False) as pipe:
                for channel, payload in messages[start : start + self.batch_size]:
                    pipe.publish(channel, payload)
                pipe.execute()

    def hub(self) -> RedisHub:
        return hub_for_running_loop(self.url, self.hub_class, **self.hub_options)

    def subscribe(
        self, channel: str, woken: Flag | None = None
    ) -> contextlib.AbstractAsyncContextManager[Subscription]:
        return self.hub().subscribe(channel, woken)

    def auth_epoch(self) -> object | None:
        # Never starts a hub: a POST under WSGI (a loop per request) must not open
        # a pub/sub connection just to learn there is none.
        hub = _hubs.get(asyncio.get_running_loop())
        return hub.auth_epoch if hub is not None and hub.url == self.url else None

    def wake_everyone(self) -> int:
        return wake_hubs(_hubs)
