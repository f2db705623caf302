"""Deliver reminders when they are due, and email digests: ``python manage.py notify_scheduler``.

Runs until SIGTERM or SIGINT, which let the batch (or the digest) in hand finish before
it exits (status 0). Several may run at once: each reminder is delivered by one of them
(notify.scheduling.dispatch_due), each notification emailed in one digest
(notify.digests). Everything lives in the database, so a scheduler that was down
delivers what fell due meanwhile as soon as it is back.
"""

from __future__ import annotations

import logging
import random
import signal
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections
from django.utils import timezone

from notify import digests, outbox
from notify.conf import conf
from notify.scheduling import dispatch_due, next_due

logger = logging.getLogger("notify.scheduler")

# Longest wait between retries while the database fails, in seconds.
MAX_BACKOFF = 30.0


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        from argparse import ArgumentTypeError

        raise ArgumentTypeError(f"expected a number of seconds above 0, got {value!r}")
    return number


def positive_int(value: str) -> int:
    number = int(value) if value.isdigit() else 0
    if number < 1:
        from argparse import ArgumentTypeError

        raise ArgumentTypeError(f"expected a whole number above 0, got {value!r}")
    return number


class Command(BaseCommand):
    help = (
        "Deliver reminders (notify.send(..., deliver_at=...)) when they are due, and email digests of "
        "what stayed unread (NOTIFY['EMAIL_DIGESTS']). Runs until SIGTERM/SIGINT; several may run at once."
    )

    def get_check_kwargs(self, options: Any) -> dict[Any, Any]:  # django-stubs types its keys str | None
        # Django 6.1 runs model checks against every database by default, and JSONField's check opens a
        # connection: the scheduler must start, log and retry while its database is unreachable, so its
        # start-up checks stay the static ones, as on Django 5.2 and 6.0.
        return {**super().get_check_kwargs(options), "databases": []}

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--interval",
            type=positive_float,
            default=0.5,
            help="Most seconds between two looks at the database (default 0.5): a reminder created by "
            "another process is seen within this time, and delivered at its time if that is later.",
        )
        parser.add_argument(
            "--batch", type=positive_int, default=500, help="Reminders numbered in one transaction (default 500)."
        )
        parser.add_argument(
            "--once", action="store_true", help="Deliver what is due now (and email the digests due), then exit."
        )
        parser.add_argument("--database", default="default", help="The database alias (default 'default').")

    def handle(self, *args: Any, **options: Any) -> None:
        if not logger.hasHandlers():  # a project without LOGGING for "notify": still say what happens
            stderr = logging.StreamHandler(sys.stderr)
            stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(stderr)
            logger.setLevel(logging.INFO)
        using, batch, interval = options["database"], options["batch"], options["interval"]

        if options["once"]:
            try:
                total = self.dispatch_all(using, batch)
                emailed = self.email_digests(using)
            except DatabaseError as problem:
                raise CommandError(f"The database failed: {problem}") from problem
            self.stdout.write(f"Delivered {total} reminder(s).")
            if emailed is not None:
                self.stdout.write(f"Sent {emailed.sent} digest(s).")
            return

        stop = threading.Event()

        def request_stop(signum: int, frame: Any) -> None:
            # Only sets a flag: a batch in hand is finished and committed first.
            logger.info("notify_scheduler: %s received, stopping", signal.Signals(signum).name)
            stop.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        # Digests in a thread of their own: an SMTP server that hangs (up to EMAIL_TIMEOUT per
        # attempt) must not hold reminders back. It has its own database connection (Django's
        # are per thread) and the same stop: on SIGTERM it finishes the digest in hand.
        emailer = None
        if conf.EMAIL_DIGESTS:
            emailer = threading.Thread(
                target=self.email_loop, args=(using, interval, stop), name="notify-digests", daemon=True
            )
            emailer.start()
        logger.info("notify_scheduler: started (interval %g s, batch %d, database %r)", interval, batch, using)
        failures = 0
        try:
            while not stop.is_set():
                try:
                    dispatched = self.dispatch_all(using, batch, stop)
                    due = next_due(using)
                except DatabaseError as problem:
                    failures += 1
                    # Exponential backoff with full jitter: several schedulers
                    # facing a database that restarts do not come back in step.
                    delay = random.uniform(interval, min(MAX_BACKOFF, interval * 2**failures))
                    logger.warning("notify_scheduler: database error (%s); retrying in %.1f s", problem, delay)
                    connections[using].close()  # the next attempt reconnects
                    stop.wait(delay)
                    continue
                if failures:
                    logger.info("notify_scheduler: the database answers again")
                    failures = 0
                # Sleep until the next reminder is due, but look again within
                # `interval`: reminders created meanwhile by other processes may be
                # due sooner.
                wait = interval
                if due is not None:
                    wait = min(interval, max(0.0, (due - timezone.now()).total_seconds()))
                    if not wait and not dispatched:
                        wait = min(interval, 0.05)  # due, but another scheduler holds it: no busy loop
                stop.wait(wait)
        finally:
            stop.set()
            if emailer is not None:
                emailer.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("notify_scheduler: stopped")

    def email_loop(self, using: str, interval: float, stop: threading.Event) -> None:
        """Email the digests due, every ``interval`` s, until ``stop``; back off on database errors."""
        failures = 0
        try:
            while not stop.is_set():
                try:
                    self.email_digests(using, stop)
                except DatabaseError as problem:
                    failures += 1
                    delay = random.uniform(interval, min(MAX_BACKOFF, interval * 2**failures))
                    logger.warning(
                        "notify_scheduler: database error in digests (%s); retrying in %.1f s", problem, delay
                    )
                    connections[using].close()
                    stop.wait(delay)
                    continue
                except Exception:
                    # A bug must not end email for good while reminders go on: log it and try again.
                    failures += 1
                    logger.exception("notify_scheduler: the digest pass failed")
                    stop.wait(min(MAX_BACKOFF, interval * 2**failures))
                    continue
                failures = 0
                stop.wait(interval)
        finally:
            connections.close_all()  # this thread's

    def email_digests(self, using: str, stop: threading.Event | None = None) -> digests.Pass | None:
        """One pass of notify.digests, if the project emails digests. SMTP failures are the
        pass's own business (logged, retried with backoff); database errors are raised."""
        if not conf.EMAIL_DIGESTS:
            return None
        total = digests.Pass()
        while True:
            claimed = digests.claim_digests(using=using)
            done = outbox.send_pending(using=using, stop=stop)
            done.claimed = claimed
            if done.claimed or done.sent:
                logger.info("notify_scheduler: claimed %d digest(s), sent %d", done.claimed, done.sent)
            total.claimed += done.claimed
            total.sent += done.sent
            total.failed += done.failed
            # A full pass: more may be due at once (bounded: each pass claims or sends a full batch).
            full = conf.EMAIL_DIGESTS_PER_PASS in (done.claimed, done.sent)
            if not full or (stop is not None and stop.is_set()):
                return total

    def dispatch_all(self, using: str, batch: int, stop: threading.Event | None = None) -> int:
        """Dispatch batches until fewer than ``batch`` were due (or a stop is asked)."""
        total = 0
        while True:
            count = dispatch_due(using=using, batch=batch)
            total += count
            if count:
                logger.info("notify_scheduler: delivered %d reminder(s)", count)
            if count < batch or (stop is not None and stop.is_set()):
                return total
