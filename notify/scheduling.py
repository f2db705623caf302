"""Reminders: notifications stored now and delivered at their ``deliver_at``.

A reminder is a ``Notification`` with ``deliver_at`` set and no ``seq``. Every poll
query asks for ``seq > cursor``, so until it is numbered no poll, snapshot or
unread count sees it. When it is due, ``dispatch_due`` (run in a loop by
``manage.py notify_scheduler``) numbers it in its recipient's stream, exactly as a
send at that moment would, and publishes it after commit: it arrives after
everything sent before its time and before everything sent after.

Cancelling and rescheduling change only rows that still have no seq, under a row
lock, so they race safely with a dispatcher: once a reminder is delivered they
return False and change nothing.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction
from django.utils import timezone

from notify.models import CHUNK, assign_seqs
from notify.sending import check_deliver_at, publish_on_commit

if TYPE_CHECKING:
    from notify.models import Notification, NotificationQuerySet

__all__ = ["cancel", "check_deliver_at", "dispatch_due", "next_due", "reschedule"]


# A test hook (tests/test_faults.py stops a scheduler at an exact point of a batch): with
# NOTIFY_TEST_BATCH_BARRIER naming a folder, batch n of this process touches
# "<n>-numbered.reached" once its reminders are numbered and "<n>-committing.reached" when
# all but the commit is done, and waits at each until the test creates the ".go" file of
# the same name. Read once, at import: unset (always, outside the tests), it costs a test
# of a None per batch.
_BARRIER = os.environ.get("NOTIFY_TEST_BATCH_BARRIER") or None
_batches = 0


def _barrier(point: str) -> None:
    assert _BARRIER is not None
    folder = Path(_BARRIER)
    (folder / f"{_batches}-{point}.reached").touch()
    while not (folder / f"{_batches}-{point}.go").exists():
        time.sleep(0.005)


def _due(using: str, now: datetime.datetime) -> NotificationQuerySet:
    from notify.models import Notification

    # page=False: email-only (notify.preferences), never numbered; the digest sends it once due.
    return Notification.objects.using(using).filter(seq__isnull=True, page=True, deliver_at__lte=now)


def dispatch_due(*, using: str = "default", batch: int = 500) -> int:
    """Number and publish up to ``batch`` due reminders, oldest due first; return how many.

    Safe to run in several processes at once: each reminder is numbered, and so
    published, by exactly one of them.
    """
    now = timezone.now()
    # A read first, outside any transaction: most calls find nothing, and on
    # SQLite the transaction below would take the database's write lock at BEGIN.
    if not _due(using, now).exists():
        return 0
    features = connections[using].features
    with transaction.atomic(using=using):
        rows = _due(using, now).order_by("deliver_at", "pk")
        if features.has_select_for_update_skip_locked:
            # PostgreSQL: rows another dispatcher has locked are skipped, not
            # waited for. A row it numbered and committed since our snapshot is
            # re-checked against the WHERE clause when we lock it (seq is no
            # longer NULL), so it is left out too.
            rows = rows.select_for_update(skip_locked=True)
        elif features.has_select_for_update:
            # Without SKIP LOCKED: wait for the other dispatcher, then re-check.
            rows = rows.select_for_update()
        # SQLite has no row locks, and needs none here: the project opens every
        # transaction with BEGIN IMMEDIATE (transaction_mode="IMMEDIATE"), which
        # takes the database's write lock at once. A second dispatcher waits at
        # its BEGIN until the first commits, and only then reads: the rows the
        # first numbered have a seq by then, so they are no longer due.
        due: list[Notification] = list(rows[:batch])
        if not due:
            return 0
        if _BARRIER is not None:
            global _batches
            _batches += 1
        # Locks the recipients' Inbox rows in user id order, as every send does.
        assign_seqs(due, using=using)
        if _BARRIER is not None:
            _barrier("numbered")
        type(due[0]).objects.using(using).bulk_update(due, ["seq"], batch_size=CHUNK)
        publish_on_commit(due, using=using)
        if _BARRIER is not None:
            _barrier("committing")
    return len(due)


def next_due(using: str = "default") -> datetime.datetime | None:
    """When the earliest undelivered reminder is due (possibly already past), or None."""
    from notify.models import Notification

    return (
        Notification.objects.using(using)
        .filter(seq__isnull=True, page=True, deliver_at__isnull=False)
        .order_by("deliver_at")
        .values_list("deliver_at", flat=True)
        .first()
    )


def _pk(notification_or_id: Any) -> Any:
    from notify.models import Notification

    if isinstance(notification_or_id, Notification):
        if notification_or_id.pk is None:
            raise ValueError("This notification was never saved.")
        return notification_or_id.pk
    if isinstance(notification_or_id, bool) or not isinstance(notification_or_id, (int, str)):
        raise TypeError(f"Expected a Notification or its id, got {notification_or_id!r}")
    return notification_or_id


def _lock_undelivered(pk: Any, using: str) -> Notification | None:
    """The reminder ``pk``, locked until the transaction ends, if it is still undelivered.

    On PostgreSQL this waits for a dispatcher holding the row, then re-checks
    ``seq IS NULL``: a reminder delivered meanwhile is not returned. On SQLite the
    transaction holds the database's write lock (BEGIN IMMEDIATE): no dispatcher
    runs until it ends.
    """
    from notify.models import Notification

    return Notification.objects.using(using).select_for_update().filter(pk=pk, seq__isnull=True, page=True).first()


def cancel(notification_or_id: Any, *, using: str = "default") -> bool:
    """Delete a reminder before it is delivered; False (and nothing changed) if it already was."""
    pk = _pk(notification_or_id)
    with transaction.atomic(using=using):
        reminder = _lock_undelivered(pk, using)
        if reminder is None:
            return False
        reminder.delete(using=using)
    return True


def reschedule(notification_or_id: Any, deliver_at: datetime.datetime, *, using: str = "default") -> bool:
    """Move a reminder to ``deliver_at``; False (and nothing changed) if it was already delivered.

    A time now or past delivers it at once, as ``send`` does.
    """
    from notify.models import Notification

    check_deliver_at(deliver_at)
    pk = _pk(notification_or_id)
    with transaction.atomic(using=using):
        reminder = _lock_undelivered(pk, using)
        if reminder is None:
            return False
        reminder.deliver_at = deliver_at
        if deliver_at <= timezone.now():
            assign_seqs([reminder], using=using)
            publish_on_commit([reminder], using=using)
        Notification.objects.using(using).filter(pk=pk).update(deliver_at=deliver_at, seq=reminder.seq)
    if isinstance(notification_or_id, Notification):
        notification_or_id.deliver_at, notification_or_id.seq = reminder.deliver_at, reminder.seq
    return True
