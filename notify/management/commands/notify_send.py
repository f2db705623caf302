from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from notify.models import Level
from notify.sending import send


class Command(BaseCommand):
    help = "Send a notification to a user; held polls of that user are answered at once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("title")
        parser.add_argument("--body", default="")
        parser.add_argument("--level", default=Level.INFO, choices=Level.values)
        parser.add_argument("--url", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(options["username"])
        except User.DoesNotExist:
            raise CommandError(f"No user with {User.USERNAME_FIELD} {options['username']!r}.") from None
        [notification] = send(
            user, options["title"], options["body"], level=options["level"], url=options["url"]
        )
        self.stdout.write(f"Sent notification {notification.pk} to {user}.")
