"""Email digests: the outbox, sent (docs/email.md#exactly-once).

``send_pending`` runs in each pass of ``manage.py notify_scheduler``'s digest thread,
after notify.digests claimed what is due: each pending digest (this pass's, and any a
dead scheduler left) is taken by a compare-and-set lease, rendered (notify.mail), sent
through Django's email backend and marked sent. A failed send is tried again later, with
backoff; never dropped. A scheduler killed after the SMTP server took a digest and
before it marked it sent is the one window for a second copy (once the lease lapses),
with the same Message-ID.
"""

from __future__ import annotations

import datetime
import logging
import random
import smtplib
import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from notify import digests, preferences
from notify.conf import conf
from notify.digests import Pass, reachable

if TYPE_CHECKING:
    from notify.models import Digest

__all__ = ["send_pending"]

logger = logging.getLogger("notify.scheduler")

# Backoff of a digest whose send failed: 1 min, doubling, at most an hour between tries.
RETRY_FIRST, RETRY_MOST = 60.0, 3600.0

# The n-th digest this process sends, for the test barrier (notify.digests.barrier).
_sends = 0


def _leasable(now: datetime.datetime) -> Q:
    return (
        Q(status="pending")
        & (Q(retry_at__isnull=True) | Q(retry_at__lte=now))
        & (Q(leased_until__isnull=True) | Q(leased_until__lte=now))
    )


def _take(pk: int, using: str) -> bool:
    """Lease digest ``pk`` for this scheduler: a compare-and-set, so one scheduler wins."""
    from notify.models import Digest

    now = timezone.now()
    until = now + datetime.timedelta(seconds=conf.EMAIL_SEND_LEASE)
    return bool(Digest.objects.using(using).filter(_leasable(now), pk=pk).update(leased_until=until))


def send_pending(*, using: str = "default", limit: int | None = None, stop: threading.Event | None = None) -> Pass:
    """Send up to ``limit`` pending digests, oldest first, one at a time (a stop asked is
    obeyed between two). SMTP failures are logged and tried again later; database errors
    are raised (the scheduler backs off)."""
    from django.core.mail import get_connection

    from notify.models import Digest

    done = Pass()
    limit = limit or conf.EMAIL_DIGESTS_PER_PASS
    pks = list(
        Digest.objects.using(using)
        .filter(_leasable(timezone.now()))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    if not pks:
        return done
    # A socket timeout, so that a hung SMTP server cannot hold the scheduler past its lease.
    connection = get_connection(timeout=getattr(settings, "EMAIL_TIMEOUT", None) or 60)
    try:
        for pk in pks:
            if stop is not None and stop.is_set():
                break
            if not _take(pk, using):
                continue  # another scheduler has it
            outcome = _send_one(pk, using, connection)
            if outcome == "sent":
                done.sent += 1
            elif outcome == "failed":
                done.failed += 1
            elif outcome == "unreachable":
                done.failed += 1
                break  # the SMTP server is down: the rest wait for the next pass
    finally:
        try:
            connection.close()
        except Exception:  # a broken connection may fail to say QUIT; nothing is lost
            logger.debug("notify_scheduler: closing the email connection failed", exc_info=True)
    return done


# Refusals of this one message; anything else from smtplib (or the socket) is the server's.
_MESSAGE_REFUSED = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


def _send_one(pk: int, using: str, connection: Any) -> str:
    """Send leased digest ``pk``: "sent", "dropped", "deferred", "failed" or "unreachable"."""
    from notify import mail
    from notify.models import Digest, DigestSchedule, DigestStatus, EmailStatus

    window = datetime.timedelta(seconds=conf.EMAIL_DIGEST_WINDOW)
    digest = Digest.objects.using(using).select_related("user").filter(pk=pk).first()
    if digest is None:
        return "dropped"  # its user was deleted (and the digest with them) meanwhile
    now = timezone.now()
    wanted = preferences.preferences_for(digest.user_id, using=using)
    if not wanted.email_enabled or digest.user_id not in reachable([digest.user_id], using):
        digest.notifications.filter(email_status=EmailStatus.PENDING).update(email_status=EmailStatus.NONE)
        _finish(digest, DigestStatus.DROPPED, using)
        return "dropped"
    quiet_end = wanted.quiet_until(now)
    if quiet_end is not None:  # a retry fell in quiet hours
        Digest.objects.using(using).filter(pk=pk).update(retry_at=quiet_end, leased_until=None)
        return "deferred"
    # Read since it was claimed: left out, and never emailed.
    digest.notifications.filter(email_status=EmailStatus.PENDING, read_at__isnull=False).update(
        email_status=EmailStatus.SKIPPED
    )
    unread = digest.notifications.filter(email_status=EmailStatus.PENDING).order_by("created_at", "pk")
    total = unread.count()
    if not total:
        _finish(digest, DigestStatus.DROPPED, using)
        return "dropped"
    try:
        message = mail.digest_message(digest, list(unread[: conf.EMAIL_DIGEST_MAX_ITEMS]), total, connection)
        if digests.BARRIER is not None:
            global _sends
            _sends += 1
            digests.barrier(f"{_sends}-leased")
        message.send()
    except DatabaseError:
        raise
    except Exception as problem:  # SMTP, a socket, a template: logged, tried again later
        _retry_later(digest, problem, using)
        try:
            connection.close()  # the next send opens a fresh one
        except Exception:
            logger.debug("notify_scheduler: closing the email connection failed", exc_info=True)
        if isinstance(problem, OSError) and not isinstance(problem, _MESSAGE_REFUSED):
            return "unreachable"
        return "failed"
    if digests.BARRIER is not None:
        digests.barrier(f"{_sends}-sent")
    with transaction.atomic(using=using):
        digest.notifications.filter(email_status=EmailStatus.PENDING).update(email_status=EmailStatus.SENT)
        _finish(digest, DigestStatus.SENT, using)
        # The window runs from the send: a digest sent late (after SMTP failures) is not
        # followed by the next one at once.
        sent_at = timezone.now()
        DigestSchedule.objects.using(using).filter(user_id=digest.user_id).filter(
            Q(not_before__isnull=True) | Q(not_before__lt=sent_at + window)
        ).update(not_before=sent_at + window)
    return "sent"


def _finish(digest: Digest, status: str, using: str) -> None:
    from notify.models import Digest

    sent_at = timezone.now() if status == "sent" else None
    Digest.objects.using(using).filter(pk=digest.pk).update(status=status, sent_at=sent_at, leased_until=None)


def _retry_later(digest: Digest, problem: Exception, using: str) -> None:
    from notify.models import Digest

    attempts = digest.attempts + 1
    # Full jitter: several schedulers facing an SMTP server that comes back do not retry in step.
    delay = random.uniform(RETRY_FIRST / 2, min(RETRY_MOST, RETRY_FIRST * 2 ** (attempts - 1)))
    retry_at = timezone.now() + datetime.timedelta(seconds=delay)
    logger.warning(
        "notify_scheduler: could not send digest %d to user %d (attempt %d: %s); trying again in %.0f s",
        digest.pk,
        digest.user_id,
        attempts,
        problem,
        delay,
    )
    Digest.objects.using(using).filter(pk=digest.pk).update(
        attempts=F("attempts") + 1, retry_at=retry_at, leased_until=None, last_error=repr(problem)[:1000]
    )
