"""What one user, and one worker, may ask of notify: the limits, and their answers (429, 503).

Per user, across every worker and host (counted in Redis by notify.ratelimit; in this
process with the memory broker, or while Redis fails):

- held polls (``MAX_POLLS_PER_USER``): ``PollLimiter.hold``, also counted per process;
- streams answered at once, by polls without a cursor (``MAX_SNAPSHOTS_PER_SECOND``);
- publishes over HTTP, to one topic and in all (``MAX_TOPIC_PUBLISHES_PER_MINUTE``,
  ``MAX_PUBLISHES_PER_MINUTE``), and new topics made by them (``MAX_NEW_TOPICS_PER_HOUR``);
- reminders pending (``MAX_PENDING_REMINDERS_PER_USER``), counted in the database where a
  project lets users create them (``bounded_reminders``; the demo's "Remind me" form).

Per worker process: held polls in all (``MAX_HELD_POLLS``): it protects the process.

The Python API (``notify.send``, ``notify.publish``) is the project's own code and is not
limited: these limits are for what HTTP clients can make a server do.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from notify import db, ratelimit
from notify.broker import Flag
from notify.conf import conf
from notify.ratelimit import Refused, Rule

T = TypeVar("T")

# Retry-After of a 429 or 503 that no window dates (held polls: one may end any moment).
RETRY_AFTER = 5


class LimitExceeded(Exception):
    """A request past a limit: 429 for a user's, 503 for the process's, with Retry-After (seconds)."""

    def __init__(self, status: int, code: str, detail: str, retry_after: int = RETRY_AFTER) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


class TooManyPolls(LimitExceeded):
    """A held poll past a limit: 429 for the user's, 503 for the process's."""


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


class PollLimiter:
    """Held polls: per user across workers (notify.ratelimit) and in this process; per process in all."""

    def __init__(self) -> None:
        self._held: Counter[int] = Counter()
        self._total = 0
        self._lock = threading.Lock()  # WSGI servers call from several threads

    def acquire(self, user_id: int, per_user: int, total: int) -> str | None:
        """Count one more held poll in this process, or say which limit it would pass: "user" or "process"."""
        with self._lock:
            if self._total >= total:
                return "process"
            if self._held[user_id] >= per_user:
                return "user"
            self._held[user_id] += 1
            self._total += 1
            return None

    def release(self, user_id: int) -> None:
        with self._lock:
            self._total -= 1
            self._held[user_id] -= 1
            if self._held[user_id] <= 0:
                del self._held[user_id]

    async def hold(
        self, user_id: int, per_user: int, total: int, timeout: float, holding: Callable[[SlotVerdict], Awaitable[T]]
    ) -> T:
        """Run ``holding(verdict)``, a held poll of at most ``timeout`` seconds, counted; TooManyPolls past
        a limit (and then it is never started, or ended: ``SlotVerdict``).

        Counted in this process (the process's limit, and the user's here: the bound that
        remains when Redis fails), then among the user's polls in every worker.
        """
        async with self.in_process(user_id, per_user, total):
            return await across_workers(user_id, per_user, timeout, holding)

    @asynccontextmanager
    async def in_process(self, user_id: int, per_user: int, total: int) -> AsyncIterator[None]:
        refused = self.acquire(user_id, per_user, total)
        if refused == "user":
            raise TooManyPolls(429, "too_many_polls", _too_many_polls(per_user))
        if refused == "process":
            raise TooManyPolls(503, "server_busy", "This server holds as many polls as it can; try again shortly.")
        try:
            yield
        finally:
            self.release(user_id)

    @property
    def held(self) -> int:
        return self._total


def _too_many_polls(per_user: int) -> str:
    return (
        f"This user already holds {per_user} polls (NOTIFY['MAX_POLLS_PER_USER'], across all servers); "
        "close one or wait for it to be answered."
    )


class SlotVerdict:
    """Whether a held poll has its slot among the user's polls in every worker: asked of Redis
    beside the poll, not before it (``across_workers``).

    The poll calls ``check()`` after its database check and after every wake-up, and is
    woken (``wake_on_refusal``) when a refusal arrives while it waits: it then ends with
    TooManyPolls (429) at once instead of at its timeout.
    """

    __slots__ = ("future", "per_user", "_flag")

    def __init__(self, future: asyncio.Future[ratelimit.Slot | None], per_user: int) -> None:
        self.future = future
        self.per_user = per_user
        self._flag: Flag | None = None
        future.add_done_callback(self._arrived)

    def refused(self) -> bool:
        future = self.future
        return future.done() and not future.cancelled() and future.exception() is None and future.result() is None

    def check(self) -> None:
        if self.refused():
            raise TooManyPolls(429, "too_many_polls", _too_many_polls(self.per_user))

    def wake_on_refusal(self, flag: Flag) -> None:
        self._flag = flag
        if self.refused():
            flag.set()

    def _arrived(self, future: asyncio.Future[ratelimit.Slot | None]) -> None:
        if self._flag is not None and self.refused():
            self._flag.set()


async def across_workers(
    user_id: int, per_user: int, timeout: float, holding: Callable[[SlotVerdict], Awaitable[T]]
) -> T:
    """Run ``holding(verdict)`` in a slot among the user's ``per_user`` held polls in every worker;
    429 if none is free.

    The slot is asked for beside the poll, not before it: the poll subscribes and checks
    the database while Redis answers, so a client that re-polls the moment it is answered
    is listening again without waiting on the limits' round trip, which at thousands of
    re-polls a second queues behind the others (a broadcast). The poll ends with 429 as
    soon as Redis says the user has no slot free (``SlotVerdict``); an answer found before
    Redis has said so waits for it. No task of its own: a future, answered with the other
    polls' takes (notify.ratelimit). The slot lapses ``slot_seconds(timeout)`` from when it
    was taken, so that a worker killed while holding it leaks it no longer than its poll
    would have lasted.
    """
    verdict = SlotVerdict(ratelimit.take_slot_soon(user_id, per_user, slot_seconds(timeout)), per_user)
    try:
        result = await holding(verdict)
        if not verdict.future.done():
            await asyncio.wait((verdict.future,))  # not cancelled with the poll: its slot must be freed
        verdict.check()
        return result
    finally:
        verdict.future.add_done_callback(_free_taken_slot)


def _free_taken_slot(taking: asyncio.Future[ratelimit.Slot | None]) -> None:
    if not taking.cancelled() and taking.exception() is None and (slot := taking.result()) is not None:
        ratelimit.free_slot(slot)


def slot_seconds(timeout: float) -> float:
    """How long a held poll's slot lasts: its timeout, plus the most a poll may answer late
    (two queries of DB_TIMEOUT: the credential and the last look), plus a second."""
    return timeout + 2 * conf.DB_TIMEOUT + 1


poll_limiter = PollLimiter()


async def count_snapshot(user_id: int, streams: int) -> None:
    """Count a poll answered at once (some stream without a cursor), one per stream it asks
    for; LimitExceeded (429) past MAX_SNAPSHOTS_PER_SECOND."""
    limit = conf.MAX_SNAPSHOTS_PER_SECOND
    if limit is None:
        return
    refused = await ratelimit.hit(user_id, [Rule("snapshots", limit, 1.0)], cost=streams)
    if refused is not None:
        raise LimitExceeded(
            429,
            "too_many_snapshots",
            f"This user asked for more than {limit} streams a second without a cursor "
            "(NOTIFY['MAX_SNAPSHOTS_PER_SECOND'], one per stream of a poll answered at once); "
            "poll with the cursor of the last answer, or try again shortly.",
            _seconds(refused.retry_after),
        )


async def count_publish(user_id: int, topic: str) -> None:
    """Count a publish over HTTP: to ``topic``, in all, and as a new topic if it makes one.
    Nothing is counted if any limit refuses it: LimitExceeded (429) saying which."""
    rules = []
    if conf.MAX_TOPIC_PUBLISHES_PER_MINUTE is not None:
        rules.append(Rule(f"publishes:{topic}", conf.MAX_TOPIC_PUBLISHES_PER_MINUTE, 60.0))
    if conf.MAX_PUBLISHES_PER_MINUTE is not None:
        rules.append(Rule("publishes", conf.MAX_PUBLISHES_PER_MINUTE, 60.0))
    if conf.MAX_NEW_TOPICS_PER_HOUR is not None and not await db.read(_topic_exists, topic):
        rules.append(Rule("new-topics", conf.MAX_NEW_TOPICS_PER_HOUR, 3600.0))
    refused = await ratelimit.hit(user_id, rules)
    if refused is not None:
        raise LimitExceeded(429, "too_many_publishes", _publish_refusal(refused, topic), _seconds(refused.retry_after))


async def count_preference_change(user_id: int) -> None:
    """Count a change of preferences over HTTP (each rewrites the user's rules): LimitExceeded
    (429) past MAX_PREFERENCE_CHANGES_PER_MINUTE."""
    if conf.MAX_PREFERENCE_CHANGES_PER_MINUTE is None:
        return
    limit = conf.MAX_PREFERENCE_CHANGES_PER_MINUTE
    refused = await ratelimit.hit(user_id, [Rule("preference-changes", limit, 60.0)])
    if refused is not None:
        raise LimitExceeded(
            429,
            "too_many_changes",
            f"At most {limit} changes of preferences a minute (NOTIFY['MAX_PREFERENCE_CHANGES_PER_MINUTE']).",
            _seconds(refused.retry_after),
        )


def _topic_exists(name: str) -> bool:
    from notify.models import Topic

    return Topic.objects.filter(name=name).exists()


def _publish_refusal(refused: Refused, topic: str) -> str:
    wait = f"try again in {_seconds(refused.retry_after)} s"
    limit = refused.rule.limit
    if refused.rule.name == "new-topics":
        return (
            f"This user made {limit} new topics in the last hour (NOTIFY['MAX_NEW_TOPICS_PER_HOUR']); "
            f"{topic!r} does not exist yet: publish to an existing topic, or {wait}."
        )
    if refused.rule.name == "publishes":
        return f"This user published {limit} messages in the last minute (NOTIFY['MAX_PUBLISHES_PER_MINUTE']); {wait}."
    return (
        f"This user published {limit} messages to {topic!r} in the last minute "
        f"(NOTIFY['MAX_TOPIC_PUBLISHES_PER_MINUTE']); {wait}."
    )


@contextmanager
def bounded_reminders(user_id: int, *, using: str = "default") -> Iterator[None]:
    """Around creating reminders for ``user_id`` on a user's request: one transaction that
    is rolled back, raising LimitExceeded (429), if the user would then have more than
    MAX_PENDING_REMINDERS_PER_USER reminders pending (stored, not yet delivered).

    Counted after creating them, in the transaction, with the user's row locked
    (PostgreSQL; SQLite writes one transaction at a time): exact under concurrent
    requests on any number of workers. Retry-After: until the next reminder is due.
    """
    from notify.models import Notification

    limit = conf.MAX_PENDING_REMINDERS_PER_USER
    if limit is None:
        yield
        return
    with transaction.atomic(using=using):
        list(get_user_model()._default_manager.using(using).select_for_update().filter(pk=user_id).values("pk"))
        yield
        pending = Notification.objects.using(using).filter(recipient_id=user_id, seq__isnull=True, page=True)
        if pending.count() > limit:
            next_due = pending.order_by("deliver_at").values_list("deliver_at", flat=True).first()
            wait = (next_due - timezone.now()).total_seconds() if next_due is not None else RETRY_AFTER
            raise LimitExceeded(
                429,
                "too_many_reminders",
                f"This user has {limit} reminders pending (NOTIFY['MAX_PENDING_REMINDERS_PER_USER']); "
                "another can be set once one is delivered.",
                _seconds(wait),
            )
