"""Email digests: what is due to be emailed, claimed into the outbox (docs/email.md).

``claim_digests`` runs in each pass of ``manage.py notify_scheduler`` when
``NOTIFY["EMAIL_DIGESTS"]`` is on, before notify.outbox sends what it claimed: for up to
``EMAIL_DIGESTS_PER_PASS`` users with something due (pending, unread, shown at least
``EMAIL_DELAY[level]`` ago) whose schedule lets a digest go now, in one transaction that
holds each user's ``DigestSchedule`` row, it creates a ``Digest``, points the user's due
notifications at it, and moves the user's schedule a window on. What is read by then
becomes "skipped"; a user who turned email off (or has no address) gets nothing, and
their notifications are no longer to be emailed; a user in quiet hours is deferred to
their end.

Exactly once: a notification is claimed by one ``UPDATE ... WHERE digest IS NULL`` under
its recipient's lock, so it is in one digest; notify.outbox sends each digest once, but
for one crash window (docs/email.md#exactly-once).
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone

from notify import preferences, receipts
from notify.conf import conf

if TYPE_CHECKING:
    from notify.models import NotificationQuerySet

__all__ = ["Pass", "claim_digests", "reachable"]

# A test hook, as notify.scheduling's: with NOTIFY_TEST_DIGEST_BARRIER naming a folder, the
# n-th claim of this process that finds users due touches "claim-<n>-listed.reached" once
# it has listed them (before it locks any); the n-th digest it sends touches
# "<n>-leased.reached" once it holds the lease and "<n>-sent.reached" once the SMTP server
# took it (before it is marked sent: notify.outbox). Each waits until the test creates the ".go" file of
# the same name. Unset outside the tests.
BARRIER = os.environ.get("NOTIFY_TEST_DIGEST_BARRIER") or None
_claims = 0


def barrier(point: str) -> None:
    assert BARRIER is not None
    folder = Path(BARRIER)
    (folder / f"{point}.reached").touch()
    while not (folder / f"{point}.go").exists():
        time.sleep(0.005)


@dataclass
class Pass:
    """What one pass of the scheduler's digest thread did."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0


def _shown_before(now: datetime.datetime) -> Q | None:
    """Notifications shown (sent, or delivered if a reminder) at least their level's delay ago."""
    due: Q | None = None
    for level, delay in conf.EMAIL_DELAY.items():
        if delay is None:
            continue
        cut = now - datetime.timedelta(seconds=delay)
        # A reminder counts from its deliver_at, the rest from created_at.
        shown = Q(deliver_at__isnull=True, created_at__lte=cut) | Q(deliver_at__lte=cut)
        term = Q(level=level) & shown
        due = term if due is None else due | term
    return due


def _waiting(using: str, now: datetime.datetime) -> NotificationQuerySet | None:
    """Pending notifications in no digest yet whose time has come, read or not."""
    from notify.models import EmailStatus, Notification

    shown = _shown_before(now)
    if shown is None:
        return None
    return (
        Notification.objects.using(using)
        .filter(shown, email_status=EmailStatus.PENDING, digest__isnull=True)
        # In the page: once numbered (a reminder the dispatcher has delivered). Email-only: at once.
        .filter(Q(page=False) | Q(seq__isnull=False))
    )


def _due(using: str, now: datetime.datetime) -> NotificationQuerySet | None:
    waiting = _waiting(using, now)
    return None if waiting is None else waiting.filter(read_at__isnull=True)


def claim_digests(*, using: str = "default", limit: int | None = None) -> int:
    """Create the digests due now (at most ``limit`` users'); return how many.

    Safe in several processes at once: each user's digest is claimed under their
    ``DigestSchedule`` row's lock (skipped, not waited for, on PostgreSQL; the whole
    database's write lock on SQLite, BEGIN IMMEDIATE), and each notification by an
    UPDATE that leaves out what another digest took.
    """
    from notify.models import Digest, DigestSchedule, DigestStatus, EmailStatus

    now = timezone.now()
    limit = limit or conf.EMAIL_DIGESTS_PER_PASS
    waiting = _waiting(using, now)
    # A read first: most passes find nothing, and then write nothing (on SQLite a write,
    # even of no row, takes the database's write lock).
    if waiting is None or not waiting.exists():
        return 0
    # Read before it was due: never emailed. Only rows whose time has come are looked at
    # (the partial index on created_at where pending), each once; written only when there
    # are some (users held back by their window stay in `waiting` pass after pass).
    read = waiting.filter(read_at__isnull=False)
    if read.exists():
        read.update(email_status=EmailStatus.SKIPPED)
    schedules = DigestSchedule.objects.using(using)
    held_back = schedules.filter(user_id=OuterRef("recipient_id"), not_before__gt=now)
    # A digest still to be sent (its SMTP server failing) holds the next one back: the user
    # gets one, then the next a window later, never two at once when the server is back.
    outbox = Digest.objects.using(using).filter(user_id=OuterRef("recipient_id"), status=DigestStatus.PENDING)
    candidates = [
        row["recipient_id"]
        for row in waiting.filter(read_at__isnull=True)
        .filter(~Exists(held_back), ~Exists(outbox))
        .values("recipient_id")
        .annotate(first=Min("created_at"))
        .order_by("first")[:limit]
    ]
    if not candidates:
        return 0
    eligible = _sort_out(candidates, using, now)
    if not eligible:
        return 0
    if BARRIER is not None:
        global _claims
        _claims += 1
        barrier(f"claim-{_claims}-listed")
    # Outside the transaction: a user's first digest makes their row (a race makes it once).
    schedules.bulk_create([DigestSchedule(user_id=uid) for uid in eligible], ignore_conflicts=True)
    window = datetime.timedelta(seconds=conf.EMAIL_DIGEST_WINDOW)
    domain = urlsplit(conf.SITE_URL or "").hostname or "notify.invalid"
    claimed = 0
    features = connections[using].features
    with transaction.atomic(using=using):
        now = timezone.now()
        free = schedules.filter(user_id__in=eligible).filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        if features.has_select_for_update_skip_locked:
            # PostgreSQL: a user another scheduler is claiming for is skipped; one it claimed
            # for and committed since our snapshot is re-checked against not_before when
            # locked, and left out.
            free = free.select_for_update(skip_locked=True)
        elif features.has_select_for_update:
            free = free.select_for_update()
        # SQLite: BEGIN IMMEDIATE (the project's transaction_mode) took the database's write
        # lock; a second scheduler reads only after this one committed.
        due = _due(using, now)
        assert due is not None
        for user_id in free.order_by("user_id").values_list("user_id", flat=True):
            if Digest.objects.using(using).filter(user_id=user_id, status=DigestStatus.PENDING).exists():
                continue  # claimed by another scheduler since the candidates were listed, not sent yet
            digest = Digest.objects.using(using).create(
                user_id=user_id, created_at=now, message_id=make_msgid("notify-digest", domain=domain)
            )
            if not due.filter(recipient_id=user_id).update(digest=digest):
                digest.delete()  # read, or taken, since the candidates were listed
                continue
            schedules.filter(user_id=user_id).update(not_before=now + window)
            claimed += 1
    return claimed


def _sort_out(candidates: list[int], using: str, now: datetime.datetime) -> list[int]:
    """The candidates a digest may go to now; the rest are let go or deferred."""
    from notify.models import DigestSchedule, EmailStatus

    wanted = preferences.preferences_for_users(candidates, using=using)
    addressed = reachable(candidates, using)
    eligible: list[int] = []
    unwanted: list[int] = []
    for user_id in candidates:
        if not wanted[user_id].email_enabled or user_id not in addressed:
            unwanted.append(user_id)
            continue
        quiet_end = wanted[user_id].quiet_until(now)
        if quiet_end is None:
            eligible.append(user_id)
            continue
        # In quiet hours: no digest before they end (what falls due meanwhile goes with it).
        schedules = DigestSchedule.objects.using(using)
        schedules.bulk_create([DigestSchedule(user_id=user_id)], ignore_conflicts=True)
        schedules.filter(user_id=user_id).filter(Q(not_before__isnull=True) | Q(not_before__lt=quiet_end)).update(
            not_before=quiet_end
        )
    if unwanted:
        # Email off (the unsubscribe link, the preferences), or nowhere to send it: not emailed.
        waiting = _waiting(using, now)
        assert waiting is not None
        waiting.filter(recipient_id__in=unwanted).update(email_status=EmailStatus.NONE)
    if conf.EMAIL_SKIP_RECEIVED:
        # What an open page of the user's already received needs no email (notify.receipts: a
        # held poll presented a cursor at or past it). Unknown (no mark): emailed.
        for user_id, mark in receipts.received(eligible).items():
            waiting = _waiting(using, now)
            assert waiting is not None
            waiting.filter(recipient_id=user_id, page=True, seq__lte=mark).update(email_status=EmailStatus.SKIPPED)
    return eligible


def reachable(user_ids: list[int], using: str) -> set[int]:
    """The users among these who are active and have an email address."""
    User = get_user_model()
    field = User.get_email_field_name()
    users = (
        User._default_manager.using(using)
        .filter(pk__in=user_ids)
        .exclude(**{field: ""})
        .exclude(**{f"{field}__isnull": True})
    )
    if hasattr(User, "is_active"):
        users = users.filter(is_active=True)
    return set(users.values_list("pk", flat=True))
