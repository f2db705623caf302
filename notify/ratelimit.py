"""Counters that hold across workers and hosts, kept in Redis: fixed windows and held-poll slots.

The mechanism under notify.limits (which decides what is counted and answers 429):

- ``hit``: fixed-window counters, one per limit (``INCRBY`` and ``PEXPIRE`` in one Lua
  script, so a window always ends: nothing a crashed worker did outlives it). Several
  limits are checked together and counted only if every one has room, so a refused
  request costs no budget.
- ``take_slot`` / ``free_slot``: the polls a user holds, across every worker: a sorted
  set of poll ids scored by when each slot lapses (the poll's timeout plus the bound on
  answering it late, on Redis's own clock). Taking a slot first drops the lapsed ones,
  so a worker killed while holding polls leaks them only until their polls would have
  ended anyway.

Every key of one user carries the hash tag ``{u<id>}``: on a Redis Cluster they share a
slot, and one script may touch several of them.

Redis is asked from a few threads of this module's own, with the synchronous client.
Not notify.db's threads: a Redis that hangs must never hold up the database queries of
the poll path (reliability.md saw the token cache do that). Not ``redis.asyncio``:
its connections belong to one event loop, and under WSGI each request runs in a loop
of its own; one thread-safe client per process serves every loop. A call costs a
thread hand-off, about what one ``redis.asyncio`` round trip costs (measured here).

Failing open: when Redis fails (down, or slower than ``REDIS_TIMEOUT``), one warning is
logged and the limits are counted in this process instead (``_Local``) for
``RETRY_REDIS_AFTER`` seconds before Redis is tried again; held-poll slots are then
bounded by notify.limits' count in this process. Users are never refused because Redis
is down. With the memory broker (one process, no Redis) everything is counted here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from notify.broker.cluster import is_cluster_url, node_url, parse_cluster_url
from notify.broker.sentinel import is_sentinel_url, parse_sentinel_url
from notify.conf import conf

logger = logging.getLogger("notify")

T = TypeVar("T")

# Seconds one Redis call may take (to connect, and to answer) before the limits fail open.
REDIS_TIMEOUT = 0.5
# After a failure, seconds of counting in this process before Redis is asked again.
RETRY_REDIS_AFTER = 5.0
# Threads that talk to Redis (each holds at most one connection).
THREADS = 4

# KEYS: one counter per limit. ARGV: the cost, then each limit and its window in ms.
# Counts only if every limit has room (a cost above a limit counts as the limit, so that
# it passes an empty window). Answers {0, 0}, or {i, ms}: the limit (1-based) whose
# window frees last, and in how many ms.
WINDOW_SCRIPT = """
local cost = tonumber(ARGV[1])
local refused, wait = 0, 0
for i, key in ipairs(KEYS) do
  local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local used = tonumber(redis.call('GET', key) or '0')
  if used + math.min(cost, limit) > limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, window)
      ttl = window
    end
    if ttl >= wait then
      refused, wait = i, math.max(ttl, 1)
    end
  end
end
if refused > 0 then return {refused, wait} end
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, math.min(cost, tonumber(ARGV[2 * i])))
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[2 * i + 1]) end
end
return {0, 0}
"""

# KEYS[1]: a user's held polls (poll id -> when its slot lapses, ms on Redis's clock).
# ARGV: the poll's id, the limit, how long the slot lasts (ms). 1: taken; 0: the user
# holds the limit already. Redis's clock (TIME): workers' clocks may disagree.
SLOT_SCRIPT = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
local lasts = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + lasts, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lasts then redis.call('PEXPIRE', KEYS[1], lasts) end
return 1
"""


@dataclass(frozen=True)
class Rule:
    """One limit: at most ``limit`` per ``seconds`` of the counter ``name`` (a user's)."""

    name: str
    limit: int
    seconds: float


@dataclass(frozen=True)
class Refused:
    """``hit``'s answer when a limit has no room: which rule, and seconds until its window frees."""

    rule: Rule
    retry_after: float


@dataclass(frozen=True)
class Slot:
    """A held poll's place in its user's count across workers, to give back with ``free_slot``."""

    key: str
    poll_id: str


# A slot this process did not count in Redis (memory broker, or Redis failing): the
# per-process count of notify.limits is the bound then.
NOT_COUNTED = Slot("", "")


def user_key(user_id: int, name: str) -> str:
    """The Redis key of a user's counter ``name``; the hash tag keeps a user's keys on one Cluster slot."""
    return f"{conf.CHANNEL_PREFIX}:limit:{{u{user_id}}}:{name}"


async def hit(user_id: int, rules: Sequence[Rule], cost: int = 1) -> Refused | None:
    """Count ``cost`` against every rule of the user's, or none if any has no room (which is said)."""
    if not rules:
        return None
    if conf.BROKER == "memory":
        return _local.hit(user_id, rules, cost)
    answer = await _slot_queue().hit(user_id, rules, cost)
    return _local.hit(user_id, rules, cost) if isinstance(answer, _Failed) else answer


async def take_slot(user_id: int, limit: int, seconds: float) -> Slot | None:
    """A slot among the user's ``limit`` held polls, lasting ``seconds`` at most; None if all are taken.

    NOT_COUNTED when Redis is not used (memory broker) or fails: notify.limits' count in
    this process is the bound then. Taken with the other polls' takes and frees of this
    event loop in one Redis round trip (``_SlotQueue``).
    """
    return await take_slot_soon(user_id, limit, seconds)


def take_slot_soon(user_id: int, limit: int, seconds: float) -> asyncio.Future[Slot | None]:
    """``take_slot``'s answer as a future, without a task: the poll goes on meanwhile (notify.limits)."""
    if conf.BROKER == "memory":
        done: asyncio.Future[Slot | None] = asyncio.get_running_loop().create_future()
        done.set_result(NOT_COUNTED)
        return done
    slot = Slot(user_key(user_id, "polls"), os.urandom(8).hex())
    return _slot_queue().take(slot, limit, math.ceil(seconds * 1000))


def run_soon(source: str, keys: list[str], args: list[Any]) -> None:
    """Run a Lua script in this event loop's next round trip to Redis, with the limits' ops,
    not waited for (notify.receipts: a hint, whose loss costs nothing but an extra email).
    Nothing with the memory broker; nothing, silently, while Redis fails."""
    if conf.BROKER != "memory":
        _slot_queue().run(("script", source, keys, args))


def free_slot(slot: Slot) -> None:
    """Give a slot back (a slot that cannot be given back lapses by itself). Queued, not
    waited for: the poll's answer does not wait on Redis; the next round trip of this
    event loop gives it back, before any take queued after it. Called in the event loop."""
    if slot is not NOT_COUNTED:
        _slot_queue().free(slot)


class _SlotQueue:
    """The limit counts of one event loop, sent to Redis together: window hits, slot takes and frees.

    At 10,000 held polls a worker starts and ends hundreds of polls a second; a Redis
    round trip (and a thread hand-off) for each took the worker's event loop under: the
    ramp to 10,000 held polls went from 13 s to over 45 s. Asked while a round trip is
    under way, they go in the next, as one pipeline: frees first (a client re-polls the
    moment it is answered, and its new take must find its old slot given back).
    """

    def __init__(self) -> None:
        self._frees: list[Slot] = []
        self._asked: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    def take(self, slot: Slot, limit: int, lasts_ms: int) -> asyncio.Future[Slot | None]:
        """The slot if taken, None if the user holds ``limit``, NOT_COUNTED if Redis failed."""
        return self._queue(("take", slot, limit, lasts_ms))

    async def hit(self, user_id: int, rules: Sequence[Rule], cost: int) -> Refused | None | _Failed:
        return await self._ask(("hit", user_id, rules, cost))

    def free(self, slot: Slot) -> None:
        self._frees.append(slot)
        self._wake()

    def run(self, op: tuple[Any, ...]) -> None:
        self._queue(op)  # its answer is set on a future nobody awaits

    async def _ask(self, op: tuple[Any, ...]) -> Any:
        return await self._queue(op)

    def _queue(self, op: tuple[Any, ...]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._asked.append((op, future))
        self._wake()
        return future

    def _wake(self) -> None:
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._frees or self._asked:
            await asyncio.sleep(0)  # let the polls of this loop iteration queue theirs too
            frees, self._frees = self._frees, []
            asked, self._asked = self._asked, []
            ops = [("free", slot) for slot in frees] + [op for op, _ in asked]
            try:
                answers = await _redis.call(_many_in_redis, ops)
            except Exception:  # noqa: BLE001 - a bug here must not leave every asker waiting for ever
                logger.exception("notify: counting limits failed; counting them in this process instead")
                answers = _FAILED
            for index, (op, future) in enumerate(asked):
                if not future.done():  # its poll may have been cancelled meanwhile
                    answer = answers if isinstance(answers, _Failed) else answers[len(frees) + index]
                    if op[0] == "take":  # the slot, None (all taken), or NOT_COUNTED (Redis failed)
                        answer = NOT_COUNTED if isinstance(answer, _Failed) else op[1] if answer else None
                    future.set_result(answer)


_slot_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SlotQueue] = weakref.WeakKeyDictionary()


def _slot_queue() -> _SlotQueue:
    """The running loop's queue (futures belong to one loop: under WSGI, a loop per request)."""
    loop = asyncio.get_running_loop()
    found = _slot_queues.get(loop)
    if found is None:
        found = _slot_queues[loop] = _SlotQueue()
    return found


def client() -> Any:
    """The process's synchronous Redis client for these counters (and notify.receipts' marks)."""
    return _redis.client()


def held_slots(user_id: int) -> int:
    """The user's slots taken and not lapsed, across every worker, now. For tests and operators."""
    client = _redis.client()
    key = user_key(user_id, "polls")
    now_s, now_us = client.time()
    return int(client.zcount(key, now_s * 1000 + now_us // 1000 + 1, "+inf"))


# --- Redis ----------------------------------------------------------------------------


def _many_in_redis(client: Any, ops: list[tuple[Any, ...]]) -> list[Any]:
    """Each op's answer, in order, in one round trip where the client pipelines (a plain or
    Sentinel Redis); one call each on a Cluster, whose keys live on many nodes."""
    if isinstance(client, redis.cluster.RedisCluster):
        return [_one_in_redis(client, op, client) for op in ops]
    with client.pipeline(transaction=False) as pipe:
        for op in ops:
            _one_in_redis(client, op, pipe)
        raw = pipe.execute()
    return [_answer(op, answer) for op, answer in zip(ops, raw, strict=True)]


def _one_in_redis(client: Any, op: tuple[Any, ...], target: Any) -> Any:
    """Send one op to ``target`` (the client: its answer; a pipeline: queued)."""
    kind = op[0]
    if kind == "free":
        answer = target.zrem(op[1].key, op[1].poll_id)
    elif kind == "script":
        _, source, script_keys, script_args = op
        answer = _script(client, source)(keys=script_keys, args=script_args, client=target)
    elif kind == "take":
        _, slot, limit, lasts_ms = op
        answer = _script(client, SLOT_SCRIPT)(keys=[slot.key], args=[slot.poll_id, limit, lasts_ms], client=target)
    else:
        _, user_id, rules, cost = op
        keys = [user_key(user_id, rule.name) for rule in rules]
        args: list[int] = [cost]
        for rule in rules:
            args += [rule.limit, max(1, round(rule.seconds * 1000))]
        answer = _script(client, WINDOW_SCRIPT)(keys=keys, args=args, client=target)
    return answer if target is not client else _answer(op, answer)


def _answer(op: tuple[Any, ...], raw: Any) -> Any:
    if op[0] == "script":
        return raw
    if op[0] == "hit":
        refused, wait_ms = raw
        return None if not refused else Refused(op[2][int(refused) - 1], int(wait_ms) / 1000)
    return bool(raw)


_scripts: dict[tuple[int, str], Any] = {}


def _script(client: redis.Redis, source: str) -> Any:
    """The client's registered script (EVALSHA, loaded again by redis-py after a Redis restart)."""
    key = (id(client), source)
    found = _scripts.get(key)
    if found is None:
        found = _scripts[key] = client.register_script(source)
    return found


class _Failed:
    """What a Redis call answers when it failed: the caller counts in this process instead."""


_FAILED: Any = _Failed()


class _Redis:
    """The process's Redis client for the limits, its threads, and whether Redis is failing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._failing_until = 0.0
        self._failing = False

    def client(self) -> Any:
        url = conf.REDIS_URL
        with self._lock:
            found = self._clients.get(url)
            if found is None:
                found = self._clients[url] = _client_for(url)
            return found

    async def call(self, fn: Callable[..., T], *args: Any) -> T | _Failed:
        """``fn(client, *args)`` in one of this module's threads; _FAILED if Redis failed
        (now, or within RETRY_REDIS_AFTER seconds: then without asking it)."""
        if time.monotonic() < self._failing_until:
            return _FAILED
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(THREADS, thread_name_prefix="notify-limits")
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T | _Failed:
        if time.monotonic() < self._failing_until:  # failed while this call queued
            return _FAILED
        try:
            answer = fn(self.client(), *args)
        except redis.RedisError as error:
            self._failing_until = time.monotonic() + RETRY_REDIS_AFTER
            if not self._failing:
                self._failing = True
                logger.warning(
                    "notify: Redis failed for the rate limits (%s); counting them in this process "
                    "until it answers again",
                    error,
                )
            return _FAILED
        if self._failing:
            self._failing = False
            logger.warning("notify: Redis answers again; the rate limits hold across workers again")
        return answer


def _client_for(url: str) -> Any:
    """A synchronous client for ``url`` (plain, Sentinel or Cluster, as the broker reads it),
    with short timeouts and one immediate retry (a pooled connection may be stale)."""
    options: dict[str, Any] = {
        "socket_timeout": REDIS_TIMEOUT,
        "socket_connect_timeout": REDIS_TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
    }
    if is_cluster_url(url):
        seeds, pattern = parse_cluster_url(url)
        node_options = redis.connection.parse_url(node_url(pattern, seeds[0]))
        for key in ("host", "port", "db"):
            node_options.pop(key, None)
        if node_options.pop("connection_class", None) is redis.connection.SSLConnection:
            node_options["ssl"] = True
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in seeds]
        return redis.cluster.RedisCluster(startup_nodes=nodes, **node_options, **options)
    if is_sentinel_url(url):
        sentinels, service, _db, master = parse_sentinel_url(url)
        for key, value in redis.connection.parse_url(master).items():
            if key == "connection_class":
                options["ssl"] = value is redis.connection.SSLConnection
            elif key not in ("host", "port"):
                options[key] = value
        sentinel = redis.sentinel.Sentinel(
            sentinels, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        return sentinel.master_for(service, **options)
    return redis.Redis.from_url(url, **options)


_redis = _Redis()


# --- in this process ------------------------------------------------------------------


class _Local:
    """The same windows counted in this process: with the memory broker, or while Redis fails."""

    # Windows kept before the ended ones are swept out.
    SWEEP_ABOVE = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()  # WSGI servers call from several threads
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (used, ends at)

    def hit(self, user_id: int, rules: Sequence[Rule], cost: int) -> Refused | None:
        now = time.monotonic()
        keys = [user_key(user_id, rule.name) for rule in rules]
        with self._lock:
            if len(self._windows) > self.SWEEP_ABOVE:
                self._windows = {key: window for key, window in self._windows.items() if window[1] > now}
            refused: Refused | None = None
            for key, rule in zip(keys, rules, strict=True):
                used, ends = self._windows.get(key, (0, now))
                full = ends > now and used + min(cost, rule.limit) > rule.limit
                if full and (refused is None or ends - now >= refused.retry_after):
                    refused = Refused(rule, ends - now)
            if refused is not None:
                return refused
            for key, rule in zip(keys, rules, strict=True):
                used, ends = self._windows.get(key, (0, now))
                if ends <= now:
                    used, ends = 0, now + rule.seconds
                self._windows[key] = (used + min(cost, rule.limit), ends)
        return None


_local = _Local()
