"""Presence: who follows a topic now (issue 15, item 3; docs/topics.md#presence).

A held poll on a topic (alone or in a multi-stream poll) marks its user present
there; the user stays present until PRESENCE_TTL seconds after their last poll on
it ends. Kept in Redis, on Redis's clock, so it holds across workers and hosts. Per
topic:

- ``<prefix>:presence:{t:<topic>}``: a sorted set, user id -> when the user lapses (ms);
- ``<prefix>:presence:{t:<topic>}:u<id>``: the user's polls on it, poll id -> when each
  lapses: while held, its timeout plus PRESENCE_TTL from its start (so a worker killed
  while holding it leaves no ghost); once answered, PRESENCE_TTL from its end. A user
  lapses with the last of their polls (several tabs, several workers).

The hash tag ``{t:<topic>}`` keeps a topic's keys on one Cluster slot, so one script
decides each change atomically: the worker whose script sees a user arrive (absent,
or lapsed) publishes "join", the worker whose sweep removes a lapsed user publishes
"leave"; exactly one worker each. The events are messages of the topic
``presence:<topic>`` (notify.topics.publish, the user as sender): followers who ask
for them follow that stream too (a multi-stream poll), and get each once, in order,
behind a cursor, like any topic message.

Leaves are found by a sweep. ``<prefix>:presence:deadlines`` ("<user> <topic>" -> when
that user may lapse there; another slot on a Cluster) names the candidates; every
worker that holds topic polls (or held one within PRESENCE_TTL) looks at it every
PRESENCE_TTL / 4 (0.2 to 5 s), and so does every GET of a topic's presence. The
per-topic script decides, so the index is a hint only: a candidate found still
present gets its real deadline back.

Marks are queued, not awaited (as notify.ratelimit frees slots): a poll never waits
on Redis for presence, and the marks of one event loop go to Redis in one round trip
per turn. Redis failing: marks are dropped (notify.ratelimit's client logs it once);
presence lapses and comes back with the next polls. Memory broker: the same, in this
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import redis.cluster
from django.db import IntegrityError

from notify import db, topics
from notify.conf import conf
from notify.ratelimit import _Failed, _redis, _script

logger = logging.getLogger("notify")

# The stream of a topic's join and leave events is the topic of this name plus the topic's.
EVENTS_PREFIX = "presence:"
# Lapsed candidates looked at per sweep.
SWEEP_BATCH = 500

_NOW = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""

# KEYS: the topic's users, the user's polls there. ARGV: user id, poll id, how long the
# poll's mark lasts (ms). Answers {change, until, now}: change 0 (was present), 1 (joined),
# 2 (had lapsed, not yet swept: left and joined again); until: when the user lapses now.
START_SCRIPT = (
    _NOW
    + """
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = tonumber(redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIRE', KEYS[2], last - now + 1000)
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
local change = 0
if not was then change = 1 elseif tonumber(was) <= now then change = 2 end
redis.call('ZADD', KEYS[1], last, ARGV[1])
if redis.call('PTTL', KEYS[1]) < last - now + 1000 then redis.call('PEXPIRE', KEYS[1], last - now + 1000) end
return {change, last, now}
"""
)

# The poll ended: its mark lasts ARGV[3] ms from now; the user lapses with their last poll.
# A user already swept out (left) is not put back: their next poll joins again.
END_SCRIPT = (
    _NOW
    + """
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #top == 0 or not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {0, 0, now} end
redis.call('ZADD', KEYS[1], top[2], ARGV[1])
return {0, tonumber(top[2]), now}
"""
)

# KEYS: the topic's users. ARGV: the most to remove, then candidate user ids. Removes the
# lapsed users (they left: the caller says so) and answers {now, removed, each candidate's
# deadline or -1}.
SWEEP_SCRIPT = (
    _NOW
    + """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
local left = {}
for i = 2, #ARGV do left[i - 1] = redis.call('ZSCORE', KEYS[1], ARGV[i]) or '-1' end
return {now, gone, left}
"""
)

# KEYS: the deadlines. ARGV: the most to answer. The candidates whose deadline passed.
DUE_SCRIPT = (
    _NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

# KEYS: the deadlines. ARGV: pairs of candidate and its deadline found (-1: none). Only a
# deadline still passed is changed: one a poll set meanwhile is newer than what was found.
FIX_SCRIPT = (
    _NOW
    + """
for i = 1, #ARGV, 2 do
  local was = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if was and tonumber(was) <= now then
    if tonumber(ARGV[i + 1]) > now then redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    else redis.call('ZREM', KEYS[1], ARGV[i]) end
  end
end
return 0
"""
)

# KEYS: the topic's users. ARGV: the most to list. {how many are present, the ids of the
# most recently active of them}.
READ_SCRIPT = (
    _NOW
    + """
local count = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
return {count, redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[1]))}
"""
)


class Unavailable(Exception):
    """Presence cannot be read now (Redis is failing)."""


def events_topic(name: str) -> str | None:
    """The topic that carries ``name``'s join and leave events, or None if that name would be too long."""
    events = EVENTS_PREFIX + name
    return events if topics.NAME_PATTERN.fullmatch(events) else None


def is_events_topic(name: str) -> bool:
    return name.startswith(EVENTS_PREFIX)


def topic_key(name: str) -> str:
    return f"{conf.CHANNEL_PREFIX}:presence:{{t:{name}}}"


def polls_key(name: str, user_id: int) -> str:
    return f"{topic_key(name)}:u{user_id}"


def deadlines_key() -> str:
    return f"{conf.CHANNEL_PREFIX}:presence:deadlines"


def sweep_interval() -> float:
    return min(5.0, max(0.2, conf.PRESENCE_TTL / 4))


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)


# --- the engine's hook --------------------------------------------------------------


@contextlib.contextmanager
def holding(user_id: int, names: Sequence[str], timeout: float) -> Iterator[None]:
    """Mark the user present on each topic of ``names`` while a held poll (of up to ``timeout``
    seconds) follows them. Queued, never waited for. Nothing when PRESENCE is off."""
    if not names or not conf.PRESENCE:
        yield
        return
    queue = _queue()
    poll_id = os.urandom(8).hex()
    lasts, ttl = _ms(timeout + conf.PRESENCE_TTL), _ms(conf.PRESENCE_TTL)
    for name in names:
        queue.mark(("start", name, user_id, poll_id, lasts))
    queue.hold()
    try:
        yield
    finally:
        queue.release()
        for name in names:
            queue.mark(("end", name, user_id, poll_id, ttl))


async def members(name: str) -> tuple[int, list[int]]:
    """How many users are present on topic ``name``, and the ids of up to MAX_PRESENCE of them
    (the most recently active). Raises Unavailable if Redis fails."""
    if conf.BROKER == "memory":
        return _local.members(name, conf.MAX_PRESENCE)
    answer = await _redis.call(_members_in_redis, name, conf.MAX_PRESENCE)
    if isinstance(answer, _Failed):
        raise Unavailable("Redis is not answering")
    return answer


async def sweep() -> None:
    """Remove the users who lapsed and publish their "leave" (each worker holding topic polls
    does this every ``sweep_interval()``; tests and operators may call it too)."""
    if conf.BROKER == "memory":
        changes = _local.sweep()
    else:
        answer = await _redis.call(_sweep_in_redis)
        changes = [] if isinstance(answer, _Failed) else answer
    await _publish(changes)


def users(ids: Sequence[int]) -> list[dict[str, Any]]:
    """The users of ``ids`` that still exist, as ``{"id", "username"}``, by username. Synchronous."""
    from django.contrib.auth import get_user_model

    found = get_user_model()._default_manager.filter(pk__in=list(ids))
    listed = [{"id": user.pk, "username": user.get_username()} for user in found]
    return sorted(listed, key=lambda user: (user["username"], user["id"]))


# --- events ---------------------------------------------------------------------------

# (topic, user id, "join" or "leave", when on Redis's clock in ms)
Change = tuple[str, int, str, int]


def _changes(name: str, user_id: int, change: int, at: int) -> list[Change]:
    if change == 1:
        return [(name, user_id, "join", at)]
    if change == 2:
        return [(name, user_id, "leave", at), (name, user_id, "join", at)]
    return []


async def _publish(changes: list[Change]) -> None:
    if not changes:
        return
    try:
        await db.run(_publish_events, changes)
    except Exception:  # noqa: BLE001 - a failing database must not stop the marks or the sweeps
        logger.exception("notify: could not publish %d presence events", len(changes))


def _publish_events(changes: list[Change]) -> None:
    """Each change as a message of its topic's events topic. Synchronous (notify.db's threads)."""
    for name, user_id, event, at in changes:
        events = events_topic(name)
        if events is None:
            continue
        try:
            topics.publish(events, {"event": event, "user_id": user_id, "at": at}, sender=user_id)
        except (ValueError, IntegrityError):  # the user was deleted meanwhile (or as it committed): nobody to announce
            logger.info("notify: presence %s of user %s on %r not published: no such user", event, user_id, name)


# --- the queue of one event loop ------------------------------------------------------


class _Queue:
    """The presence marks of one event loop, sent together; and its sweeper, which runs while
    the loop holds topic polls."""

    def __init__(self) -> None:
        self._ops: list[tuple[Any, ...]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._held = 0
        self._until = 0.0

    def mark(self, op: tuple[Any, ...]) -> None:
        self._ops.append(op)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    def hold(self) -> None:
        self._held += 1
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def release(self) -> None:
        self._held -= 1
        # Sweep on until this loop's last poll lapsed, so the last user to leave is announced.
        self._until = asyncio.get_running_loop().time() + conf.PRESENCE_TTL + 2 * sweep_interval()

    async def _drain(self) -> None:
        while self._ops:
            await asyncio.sleep(0)  # let the polls of this loop iteration queue theirs too
            ops, self._ops = self._ops, []
            try:
                if conf.BROKER == "memory":
                    changes = _local.marks(ops)
                else:
                    answer = await _redis.call(_marks_in_redis, ops)
                    changes = [] if isinstance(answer, _Failed) else answer
            except Exception:  # noqa: BLE001 - a bug here must not stop every later mark
                logger.exception("notify: presence marks failed")
                continue
            await _publish(changes)

    async def _sweep(self) -> None:
        # Ends once the loop holds no topic poll and its last one lapsed; the next starts it again.
        loop = asyncio.get_running_loop()
        while self._held > 0 or loop.time() < self._until:
            await asyncio.sleep(sweep_interval())
            try:
                await sweep()
            except Exception:  # noqa: BLE001 - keep sweeping
                logger.exception("notify: presence sweep failed")


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()


def _queue() -> _Queue:
    loop = asyncio.get_running_loop()
    found = _queues.get(loop)
    if found is None:
        found = _queues[loop] = _Queue()
    return found


# --- Redis (in notify.ratelimit's threads) ----------------------------------------------

# Redis's clock less this process's, in ms, from the last script's answer: the deadlines
# index is written beside the scripts, in the same round trip, from this estimate (a hint:
# early by a round trip at most, which the sweep corrects).
_offset_ms = 0.0


def _marks_in_redis(client: Any, ops: list[tuple[Any, ...]]) -> list[Change]:
    global _offset_ms
    deadlines: dict[str, float] = {}
    estimate = time.time() * 1000 + _offset_ms
    calls: list[tuple[str, list[str], list[Any]]] = []
    for kind, name, user_id, poll_id, lasts in ops:
        script = START_SCRIPT if kind == "start" else END_SCRIPT
        calls.append((script, [topic_key(name), polls_key(name, user_id)], [user_id, poll_id, lasts]))
        deadlines[f"{user_id} {name}"] = estimate + lasts
    on_cluster = isinstance(client, redis.cluster.RedisCluster)  # keys on many nodes: one call each
    if on_cluster:
        raw = [_script(client, script)(keys=keys, args=args) for script, keys, args in calls]
        client.zadd(deadlines_key(), deadlines)
    else:
        with client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                _script(client, script)(keys=keys, args=args, client=pipe)
            pipe.zadd(deadlines_key(), deadlines)
            raw = pipe.execute()[:-1]
    changes: list[Change] = []
    for (_, name, user_id, _, _), (change, _, now) in zip(ops, raw, strict=True):
        changes += _changes(name, user_id, int(change), int(now))
    if raw:
        _offset_ms = int(raw[-1][2]) - time.time() * 1000
    return changes


def _sweep_in_redis(client: Any) -> list[Change]:
    due = [member.decode() for member in _script(client, DUE_SCRIPT)(keys=[deadlines_key()], args=[SWEEP_BATCH])]
    by_topic: dict[str, list[str]] = {}
    for member in due:
        user_id, name = member.split(" ", 1)
        by_topic.setdefault(name, []).append(user_id)
    changes: list[Change] = []
    fixes: list[Any] = []
    for name, user_ids in by_topic.items():
        now, gone, left = _script(client, SWEEP_SCRIPT)(keys=[topic_key(name)], args=[SWEEP_BATCH, *user_ids])
        changes += [(name, int(user_id), "leave", int(now)) for user_id in gone]
        for user_id, deadline in zip(user_ids, left, strict=True):
            fixes += [f"{user_id} {name}", float(deadline)]
    if fixes:
        _script(client, FIX_SCRIPT)(keys=[deadlines_key()], args=fixes)
    return changes


def _members_in_redis(client: Any, name: str, most: int) -> tuple[int, list[int]]:
    count, ids = _script(client, READ_SCRIPT)(keys=[topic_key(name)], args=[most])
    return int(count), [int(user_id) for user_id in ids]


# --- in this process (memory broker) ----------------------------------------------------


class _Local:
    """The same marks in this process, on its monotonic clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, dict[int, float]] = {}  # topic -> user id -> lapses at
        self._polls: dict[tuple[str, int], dict[str, float]] = {}  # (topic, user) -> poll id -> lapses at

    def marks(self, ops: list[tuple[Any, ...]]) -> list[Change]:
        changes: list[Change] = []
        with self._lock:
            for kind, name, user_id, poll_id, lasts in ops:
                now = time.monotonic()
                polls = self._polls.setdefault((name, user_id), {})
                users = self._users.setdefault(name, {})
                if kind == "start" or poll_id in polls:
                    polls[poll_id] = now + lasts / 1000
                for lapsed in [p for p, until in polls.items() if until <= now]:
                    del polls[lapsed]
                if not polls:
                    del self._polls[(name, user_id)]
                    continue
                was = users.get(user_id)
                if kind == "end" and was is None:
                    continue
                change = 1 if was is None else 2 if was <= now else 0
                users[user_id] = max(polls.values())
                changes += _changes(name, user_id, change, round(time.time() * 1000))
        return changes

    def sweep(self) -> list[Change]:
        now = time.monotonic()
        changes: list[Change] = []
        with self._lock:
            for name, users in list(self._users.items()):
                for user_id in [u for u, until in users.items() if until <= now]:
                    del users[user_id]
                    changes.append((name, user_id, "leave", round(time.time() * 1000)))
                if not users:
                    del self._users[name]
        return changes

    def members(self, name: str, most: int) -> tuple[int, list[int]]:
        now = time.monotonic()
        with self._lock:
            present = sorted(
                ((until, user_id) for user_id, until in self._users.get(name, {}).items() if until > now), reverse=True
            )
        return len(present), [user_id for _, user_id in present[:most]]


_local = _Local()
