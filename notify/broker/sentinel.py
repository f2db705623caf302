"""Redis Sentinel: the plain hub and publisher, pointed at whichever Redis the sentinels call master.

``redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>]``
names the sentinels (default port 26379) and the monitored service; the user and
password, if any, are the master's. The hub asks the sentinels for the master's
address every time it (re)connects, and follows the sentinels' ``+switch-master``
announcements while connected: after a failover it reconnects to the promoted
replica at once, even when the old master lives on (``SENTINEL FAILOVER``, a
partition) and would keep the hub listening where nothing is published any more.
The publisher is redis-py's ``Sentinel.master_for`` client, which asks the
sentinels for each new connection. Everything else is the plain ``RedisHub``: one connection per worker
event loop, SUBSCRIBE confirmed before a poll is ``ready``, polls re-checking the
database while there is no master.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from notify.broker.redis import RedisBroker, RedisHub

logger = logging.getLogger("notify.broker")

SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}


class MasterSwitched(redis.ConnectionError):
    """The sentinels named another master than the one the hub is connected to."""


def is_sentinel_url(url: str) -> bool:
    return urlsplit(str(url)).scheme in SCHEMES


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str]:
    """The sentinels, the service name, the database, and a URL for the master
    with ``<service>:0`` in place of its address (``redis://[user:password@]<service>:0/<db>[?options]``:
    credentials, TLS and redis-py's URL options are the master's)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"not a redis+sentinel:// or rediss+sentinel:// URL: {url!r}")
    auth, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or host.endswith(":"):  # no port given (or a bare IPv6 address)
            host, port = item.strip(), "26379"
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"{url!r}: {item!r} is not host:port")
        sentinels.append((host, int(port)))
    path = [segment for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"{url!r}: the path must be /<service name> or /<service name>/<database number>")
    service, db = unquote(path[0]), int(path[1]) if len(path) == 2 else 0
    master = f"{SCHEMES[parts.scheme]}://{auth + '@' if auth else ''}{path[0]}:0/{db}"
    return sentinels, service, db, master + (f"?{parts.query}" if parts.query else "")


class SentinelHub(RedisHub):
    """A RedisHub that asks the sentinels where the master is before each connection."""

    def __init__(self, url: str, **options: object) -> None:
        sentinels, self.service, _db, master = parse_sentinel_url(url)
        # The pool only supplies the connection settings (password, database, TLS,
        # name, RESP2); host and port are replaced at every connect (_connect).
        super().__init__(master, **options)  # type: ignore[arg-type]  # Redis keyword options, passed through
        self.url = url
        self._sentinels = sentinels
        self._sentinel = redis.asyncio.sentinel.Sentinel(sentinels, socket_timeout=1.0, socket_connect_timeout=1.0)

    async def _connect(self, connection: redis.asyncio.Connection) -> None:
        connection.host, connection.port = await self._sentinel.discover_master(self.service)
        await connection.connect()

    async def _keepalive(self, connection: redis.asyncio.Connection) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(super()._keepalive(connection))
            tasks.create_task(self._follow_switches(connection))

    async def _follow_switches(self, connection: redis.asyncio.Connection) -> None:
        """Raise MasterSwitched (so that the hub reconnects) when the sentinels move the master."""
        while True:
            for host, port in self._sentinels:
                # No socket timeout: a sentinel's pub/sub is silent until a switch.
                client = redis.asyncio.Redis(
                    host=host,
                    port=port,
                    socket_connect_timeout=1.0,
                    socket_keepalive=True,
                    protocol=2,
                    retry=AsyncRetry(NoBackoff(), 0),
                )
                try:
                    async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                        await pubsub.subscribe("+switch-master")
                        # A switch between our connect and this subscribe was not heard: ask.
                        self._check(connection, await self._sentinel.discover_master(self.service))
                        async for message in pubsub.listen():
                            # "<service> <old ip> <old port> <new ip> <new port>"
                            service, _, _, new_host, new_port = message["data"].decode().split()
                            if service == self.service:
                                self._check(connection, (new_host, int(new_port)))
                except (redis.RedisError, OSError) as error:
                    if isinstance(error, MasterSwitched):
                        raise
                    logger.info("notify: sentinel %s:%s: %s; trying the next one", host, port, error)
                finally:
                    await client.aclose()
            await asyncio.sleep(1.0)

    def _check(self, connection: redis.asyncio.Connection, master: tuple[str, int]) -> None:
        if (master[0], int(master[1])) != (connection.host, int(connection.port)):
            raise MasterSwitched(f"the sentinels moved {self.service!r} to {master[0]}:{master[1]}")

    async def aclose(self) -> None:
        await super().aclose()
        for sentinel in self._sentinel.sentinels:
            await sentinel.aclose()


class SentinelBroker(RedisBroker):
    hub_class = SentinelHub

    @property
    def client(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                sentinels, service, _db, master = parse_sentinel_url(self.url)
                options: dict[str, object] = {
                    "socket_timeout": 2.0,
                    "socket_connect_timeout": 1.0,
                    # One immediate retry, on a connection to the master the sentinels
                    # name now: a pooled one may point at the master before a failover.
                    "retry": Retry(NoBackoff(), 1),
                }
                # Then the master's settings as the URL gives them (db, credentials,
                # options), less its address, which the sentinels give; TLS as
                # ssl=True, so that the pool keeps its sentinel-managed connections.
                for key, value in redis.connection.parse_url(master).items():
                    if key == "connection_class":
                        options["ssl"] = value is redis.connection.SSLConnection
                    elif key not in ("host", "port"):
                        options[key] = value
                self._client = redis.sentinel.Sentinel(
                    sentinels,
                    socket_timeout=1.0,
                    socket_connect_timeout=1.0,
                ).master_for(service, **options)
            return self._client
