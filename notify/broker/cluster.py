"""Redis Cluster: sharded pub/sub (SSUBSCRIBE / SPUBLISH), one connection per shard per worker.

A shard channel lives on the master that owns its key slot, and SPUBLISH on that
shard reaches only that shard's subscribers: per-user channels (``notify:user:42``,
no hash tag) spread over every master, and so does the pub/sub traffic.

Each event loop has one ``ClusterHub``. It keeps the cluster's slot map (from
CLUSTER SLOTS) and, for every master that owns a channel with waiters, one
``ShardHub``: the plain ``RedisHub`` machinery (batched writer, FIFO reply slots so
that a poll is ``ready`` only once Redis confirmed its subscription, keep-alive,
reconnect with jittered backoff, UNSUBSCRIBE_DELAY linger) speaking SSUBSCRIBE,
SUNSUBSCRIBE and ``smessage``.

The slot map is read again whenever a shard connection is lost, a shard refuses a
command (MOVED during resharding, CLUSTERDOWN), or a shard unsubscribes us by
itself (Redis sends ``sunsubscribe`` for every channel of a slot that leaves the
node). Channels whose slot has a new owner move to that owner's hub; their polls
are woken to re-check the database and are ``ready`` again when the new master
confirms. As everywhere in notify, the database is the record of truth: a
topology change costs latency, never a notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterable
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from notify import metrics
from notify.broker.base import Flag, Hub, Subscription
from notify.broker.redis import COMMAND_BATCH, RedisHub, wake_hubs

logger = logging.getLogger("notify.broker")

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SLOTS = 16384

Address = tuple[str, int]
SlotMap = list[Address | None]


def is_cluster_url(url: str) -> bool:
    return urlsplit(str(url)).scheme in SCHEMES


def parse_cluster_url(url: str) -> tuple[list[Address], tuple[str, str]]:
    """The seed nodes of ``redis+cluster://[user:password@]host:port[,host:port...][/0][?options]``,
    and what goes before and after ``host:port`` in a node's own URL
    (``redis://[user:password@]`` and ``/0[?options]``: credentials, TLS and
    redis-py's URL options apply to every node)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"not a redis+cluster:// or rediss+cluster:// URL: {url!r}")
    auth, _, hosts = parts.netloc.rpartition("@")
    seeds = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"{url!r}: {item!r} is not host:port")
        seeds.append((host, int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"{url!r}: a Redis Cluster has database 0 only")
    return seeds, (
        f"{SCHEMES[parts.scheme]}://{auth + '@' if auth else ''}",
        f"/0{'?' + parts.query if parts.query else ''}",
    )


def node_url(pattern: tuple[str, str], address: Address) -> str:
    host, port = address
    return f"{pattern[0]}{f'[{host}]' if ':' in host else host}:{port}{pattern[1]}"


def slot_map(reply: Iterable[list], asked: Address) -> SlotMap:
    """CLUSTER SLOTS' answer as the master of each slot (None: no master)."""
    owners: SlotMap = [None] * SLOTS
    for start, end, master, *_replicas in reply:
        host = master[0].decode() if isinstance(master[0], bytes) else master[0]
        # An empty host (or "?") means "the address you reached me at".
        address = (host if host and host != "?" else asked[0], int(master[1]))
        owners[start : end + 1] = [address] * (end - start + 1)
    return owners


def slot_of(channel: str) -> int:
    return key_slot(channel.encode())


class ShardHub(RedisHub):
    """The sharded pub/sub connection to one master, in one event loop."""

    SUBSCRIBE = "SSUBSCRIBE"
    UNSUBSCRIBE = "SUNSUBSCRIBE"
    MESSAGE_KIND = b"smessage"
    SUBSCRIBE_KIND = b"ssubscribe"

    def __init__(self, cluster: ClusterHub, address: Address, url: str, **options: object) -> None:
        super().__init__(url, **options)  # type: ignore[arg-type]  # Redis keyword options, passed through
        self.cluster = cluster
        self.address = address
        # SUNSUBSCRIBEs sent and not yet answered, by channel: any other
        # ``sunsubscribe`` is Redis dropping the channel because its slot moved.
        self._unsubscribes_due: Counter[str] = Counter()

    def channels(self) -> set[str]:
        """Channels this hub has waiters for, lingers on, or is subscribed to."""
        return set(self._waiters) | set(self._idle) | self._subscribed

    def evict(self, channel: str) -> set[Subscription]:
        """Forget ``channel`` without a command (its slot is served elsewhere now,
        and its old master dropped the subscription); return its waiters."""
        if channel in self._subscribed:
            metrics.hub_channels(-1)
        self._subscribed.discard(channel)
        self._idle.pop(channel, None)
        self._replies_due.pop(channel, None)
        return self._waiters.pop(channel, set())

    async def _send(
        self, connection: redis.asyncio.Connection, to_unsubscribe: list[str], to_subscribe: list[str]
    ) -> None:
        # A sharded (un)subscribe may name channels of one slot only, and per-user
        # channels hardly ever share one: one command per channel, written together.
        self._unsubscribes_due.update(to_unsubscribe)
        commands = [(self.UNSUBSCRIBE, ch) for ch in to_unsubscribe] + [(self.SUBSCRIBE, ch) for ch in to_subscribe]
        for start in range(0, len(commands), COMMAND_BATCH):
            await connection.send_packed_command(connection.pack_commands(commands[start : start + COMMAND_BATCH]))

    def _start_connection(self) -> None:
        self._unsubscribes_due.clear()
        super()._start_connection()

    def _end_connection(self) -> None:
        # Lost, or a command was refused (MOVED, CLUSTERDOWN: read_response raises
        # those): the slot map may have changed under us.
        self._unsubscribes_due.clear()
        super()._end_connection()
        self.cluster.request_refresh()

    def _other_reply(self, kind: bytes, channel: str) -> None:
        if kind != b"sunsubscribe":
            return
        if self._unsubscribes_due[channel] > 0:
            self._unsubscribes_due[channel] -= 1
            if not self._unsubscribes_due[channel]:
                del self._unsubscribes_due[channel]
            return
        if channel not in self._subscribed:
            return
        # Redis unsubscribed us by itself: the channel's slot left this master.
        # Its polls may miss messages until it is subscribed where it lives now.
        metrics.hub_channels(-1)
        self._subscribed.discard(channel)
        self._replies_due.pop(channel, None)
        for subscription in self._waiters.get(channel, ()):
            subscription.ready.clear()
            subscription.wake()
        self.cluster.request_refresh()


class ClusterHub(Hub):
    """The sharded pub/sub of one event loop: a slot map and a ShardHub per master."""

    def __init__(
        self, url: str, *, client_name: str | None = None, unsubscribe_delay: float = 0.0, max_backoff: float = 5.0
    ) -> None:
        self.url = url
        self.seeds, self._node = parse_cluster_url(url)
        self.client_name = client_name
        self.unsubscribe_delay = unsubscribe_delay
        self.max_backoff = max_backoff
        self._owners: SlotMap | None = None
        self._shards: dict[Address, ShardHub] = {}
        # Polls whose channel's slot has no known master yet (before the first slot
        # map, or while a slot is uncovered): not ready, re-checking the database.
        self._unrouted: set[Subscription] = set()
        self._refresh_wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.refreshes = 0

    # --- what held polls call ------------------------------------------------

    def _add(self, subscription: Subscription) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresher(), name="notify-cluster-slots")
            self._refresh_wanted.set()
        hub = self._hub_for(subscription.channel)
        if hub is None:
            self._unrouted.add(subscription)
        else:
            hub._add(subscription)

    def _remove(self, subscription: Subscription) -> None:
        # A subscription lives in the hub of its slot's master in the current map
        # (_apply moves it when the map changes), or in _unrouted.
        if subscription in self._unrouted:
            self._unrouted.discard(subscription)
            return
        hub = self._hub_for(subscription.channel, create=False)
        if hub is not None:
            hub._remove(subscription)

    def _hub_for(self, channel: str, create: bool = True) -> ShardHub | None:
        if self._owners is None:
            return None
        address = self._owners[slot_of(channel)]
        if address is None:
            return None
        hub = self._shards.get(address)
        if hub is None and create:
            hub = self._shards[address] = ShardHub(
                self,
                address,
                node_url(self._node, address),
                client_name=self.client_name,
                unsubscribe_delay=self.unsubscribe_delay,
            )
        return hub

    def request_refresh(self) -> None:
        self._refresh_wanted.set()

    def wake_everyone(self) -> int:
        for subscription in self._unrouted:
            subscription.wake()
        return len(self._unrouted) + sum(hub.wake_everyone() for hub in self._shards.values())

    @property
    def shards(self) -> dict[Address, ShardHub]:
        return dict(self._shards)

    @property
    def channel_count(self) -> int:
        return sum(hub.channel_count for hub in self._shards.values())

    @property
    def waiter_count(self) -> int:
        return len(self._unrouted) + sum(hub.waiter_count for hub in self._shards.values())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for hub in self._shards.values():
            await hub.aclose()
        self._shards.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # --- the slot map ----------------------------------------------------------

    async def _refresher(self) -> None:
        backoff = 0.1
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            try:
                owners = await self._fetch_slot_map()
                self._apply(owners)
            except (redis.RedisError, OSError) as error:
                logger.warning("notify: no Redis Cluster node answered CLUSTER SLOTS (%s); retrying", error)
                self._refresh_wanted.set()
            except Exception:  # a reply we cannot read: log it, never stop following the cluster
                logger.exception("notify: could not read the Redis Cluster slot map; retrying")
                self._refresh_wanted.set()
            else:
                self.refreshes += 1
                if not self._unrouted:
                    backoff = 0.1
                    continue
                self._refresh_wanted.set()  # a slot has no master yet: ask again
            # Full jitter, as for reconnects, so that workers do not ask in step.
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, self.max_backoff)

    async def _fetch_slot_map(self) -> SlotMap:
        candidates = list(dict.fromkeys([*self._shards, *self.seeds]))
        error: Exception = redis.ConnectionError("no node to ask")
        for address in candidates:
            client = redis.asyncio.Redis.from_url(
                node_url(self._node, address),
                socket_connect_timeout=1.0,
                socket_timeout=1.0,
                protocol=2,
                retry=AsyncRetry(NoBackoff(), 0),
            )
            try:
                return slot_map(await client.execute_command("CLUSTER", "SLOTS"), address)
            except (redis.RedisError, OSError) as failure:
                error = failure
            finally:
                await client.aclose()
        raise error

    def _apply(self, owners: SlotMap) -> None:
        """Take a new slot map: move every channel whose slot changed master."""
        self._owners = owners
        moved: list[Subscription] = []
        for address, hub in list(self._shards.items()):
            for channel in hub.channels():
                if owners[slot_of(channel)] != address:
                    moved += hub.evict(channel)
            hub.resubscribe_missing()  # what a master dropped and still lives here
        for subscription in moved:
            # Messages may have been missed while it moved: re-check the database.
            subscription.ready.clear()
            subscription.wake()
        pending, self._unrouted = [*self._unrouted, *moved], set()
        for subscription in pending:
            target = self._hub_for(subscription.channel)
            if target is None:
                self._unrouted.add(subscription)
            else:
                target._add(subscription)
        masters = set(owners)
        for address, hub in list(self._shards.items()):
            if address not in masters and not hub.channels():
                # No longer a master (failed over, or removed): stop reconnecting to it.
                del self._shards[address]
                task = asyncio.get_running_loop().create_task(hub.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClusterHub] = weakref.WeakKeyDictionary()


def hub_for_running_loop(url: str, client_name: str | None = None, unsubscribe_delay: float = 0.0) -> ClusterHub:
    """The cluster hub of the running event loop (see notify.broker.redis.hub_for_running_loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.url != url:
        if hub is not None:
            loop.create_task(hub.aclose())
        hub = _hubs[loop] = ClusterHub(url, client_name=client_name, unsubscribe_delay=unsubscribe_delay)
    return hub


class ClusterBroker:
    """Publishes with SPUBLISH, one pipeline per master per batch; subscribes through ClusterHub."""

    def __init__(
        self, url: str, *, batch_size: int = 1000, client_name: str | None = None, unsubscribe_delay: float = 0.0
    ) -> None:
        self.url = url
        self.seeds, self._node = parse_cluster_url(url)
        self.batch_size = batch_size
        self.client_name = client_name
        self.unsubscribe_delay = unsubscribe_delay
        self._owners: SlotMap | None = None
        self._clients: dict[Address, redis.Redis] = {}
        self._lock = threading.Lock()

    def subscribe(
        self, channel: str, woken: Flag | None = None
    ) -> contextlib.AbstractAsyncContextManager[Subscription]:
        return hub_for_running_loop(self.url, self.client_name, self.unsubscribe_delay).subscribe(channel, woken)

    def wake_everyone(self) -> int:
        return wake_hubs(_hubs)

    def auth_epoch(self) -> None:
        # An auth channel lives on one shard and a user's channel on another: no
        # order between them, so every held poll verifies its credential.
        return None

    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        failed: list[str] = []
        for start in range(0, len(messages), self.batch_size):
            failed += self._publish_batch(messages[start : start + self.batch_size])
        if failed:
            # The senders log this; the polls find the rows in the database.
            raise redis.ConnectionError(
                f"SPUBLISH failed for {len(failed)} of {len(messages)} message(s): {'; '.join(sorted(set(failed))[:3])}"
            )

    def _publish_batch(self, batch: list[tuple[str, bytes]]) -> list[str]:
        """SPUBLISH ``batch``, grouped by master; return why each failure failed.

        A master that is down fails only its own channels. MOVED (resharding) or a
        lost connection (failover) reads the slot map again and retries once.
        """
        final: list[str] = []
        pending = batch
        for attempt in range(2):
            owners = self._slot_map(refresh=attempt > 0)
            retry: list[tuple[str, bytes]] = []
            reasons: list[str] = []
            by_master: dict[Address, list[tuple[str, bytes]]] = defaultdict(list)
            for item in pending:
                address = owners[slot_of(item[0])]
                if address is None:
                    retry.append(item)
                    reasons.append(f"slot {slot_of(item[0])} has no master")
                else:
                    by_master[address].append(item)
            for address, items in by_master.items():
                where = f"{address[0]}:{address[1]}"
                try:
                    with self._client(address).pipeline(transaction=False) as pipe:
                        for channel, payload in items:
                            pipe.execute_command("SPUBLISH", channel, payload)
                        results = pipe.execute(raise_on_error=False)
                except (redis.ConnectionError, redis.TimeoutError) as error:
                    retry += items
                    reasons += [f"{where}: {error}"] * len(items)
                    continue
                for item, result in zip(items, results, strict=True):  # one result per command
                    if isinstance(result, (redis.exceptions.MovedError, redis.exceptions.AskError)):
                        retry.append(item)
                        reasons.append(f"{where}: {result}")
                    elif isinstance(result, Exception):  # e.g. CLUSTERDOWN: retrying now will not help
                        final.append(f"{where}: {result}")
            if not retry:
                return final
            pending = retry
        return final + reasons

    def _slot_map(self, refresh: bool = False) -> SlotMap:
        with self._lock:
            if self._owners is None or refresh:
                error: Exception = redis.ConnectionError("no node to ask")
                for address in dict.fromkeys([*self._clients, *self.seeds]):
                    try:
                        reply = self._client(address, locked=True).execute_command("CLUSTER", "SLOTS")
                    except (redis.RedisError, OSError) as failure:
                        error = failure
                        continue
                    self._owners = slot_map(reply, address)
                    break
                else:
                    if self._owners is None:
                        raise error
            return self._owners

    def _client(self, address: Address, locked: bool = False) -> redis.Redis:
        if not locked:
            with self._lock:
                return self._client(address, locked=True)
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = redis.Redis.from_url(
                node_url(self._node, address),
                socket_timeout=2.0,
                socket_connect_timeout=1.0,
                # One immediate retry: a pooled connection may be stale after a
                # restart. Never a long wait: the sender is waiting.
                retry=Retry(NoBackoff(), 1),
            )
        return client
