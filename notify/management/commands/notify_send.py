from __future__ import annotations

import datetime
import re
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from notify.models import Level
from notify.sending import send

RELATIVE = re.compile(r"\+(\d+)([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_at(value: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """``--at``: an ISO 8601 time with its offset, or ``+90s``, ``+5m``, ``+2h``, ``+1d`` from now."""
    now = now or timezone.now()
    relative = RELATIVE.fullmatch(value.strip())
    if relative:
        try:
            return now + datetime.timedelta(**{UNITS[relative[2]]: int(relative[1])})
        except OverflowError:
            raise CommandError(f"--at {value!r} is too far in the future.") from None
    try:
        at = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise CommandError(
            f"--at {value!r} is neither an ISO 8601 time with an offset (2026-11-24T18:30:00+01:00, "
            "...Z) nor a delay from now (+90s, +5m, +2h, +1d)."
        ) from None
    if timezone.is_naive(at):
        raise CommandError(
            f"--at {value!r} has no UTC offset: add one (e.g. {at.isoformat()}+00:00 or ...Z), "
            "or give a delay from now (+5m)."
        )
    return at


class Command(BaseCommand):
    help = "Send a notification to a user; held polls of that user are answered at once (or at --at)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("title")
        parser.add_argument("--body", default="")
        parser.add_argument("--level", default=Level.INFO, choices=Level.values)
        parser.add_argument("--kind", default="", help="What it is about, e.g. billing.invoice (lower-case slug).")
        parser.add_argument("--url", default="")
        parser.add_argument(
            "--group",
            default="",
            help="Group it (with --kind): it replaces the user's unread one of the same kind and group, "
            "counting both, e.g. post:42. '{actors}' in the title names who acted.",
        )
        parser.add_argument("--actor", help="Who acted, for a grouped one's '{actors}' (a display name).")
        parser.add_argument(
            "--at",
            help="Deliver it later, as a reminder: an ISO 8601 time with its offset "
            "(2026-11-24T18:30:00+01:00) or a delay from now (+90s, +5m, +2h, +1d). "
            "Needs a running `manage.py notify_scheduler`.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        deliver_at = parse_at(options["at"]) if options["at"] is not None else None
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(options["username"])
        except User.DoesNotExist:
            raise CommandError(f"No user with {User.USERNAME_FIELD} {options['username']!r}.") from None
        try:
            sent = send(
                user,
                options["title"],
                options["body"],
                level=options["level"],
                kind=options["kind"],
                url=options["url"],
                deliver_at=deliver_at,
                group=options["group"],
                actor=options["actor"],
            )
        except (TypeError, ValueError) as problem:
            raise CommandError(str(problem)) from None
        if not sent:
            self.stdout.write(f"Not sent: {user}'s preferences want this kind and level nowhere.")
            return
        [notification] = sent
        if not notification.page:
            self.stdout.write(
                f"Stored notification {notification.pk} for {user}'s next email digest (their preferences)."
            )
        elif notification.seq is None:
            when = timezone.localtime(notification.deliver_at).isoformat(timespec="seconds")
            self.stdout.write(f"Scheduled notification {notification.pk} to {user} for {when}.")
        elif notification.group_count > 1:  # grouping: it replaced the user's unread one of its group
            count = notification.group_count
            self.stdout.write(f"Sent notification {notification.pk} to {user}, counting {count} in its group.")
        else:
            self.stdout.write(f"Sent notification {notification.pk} to {user}.")
