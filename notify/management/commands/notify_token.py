from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from notify.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create an API token for a user and print it alone on the last line "
        "(only its hash is stored), or revoke that user's tokens with --revoke."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label to recognise the token by.")
        parser.add_argument(
            "--revoke",
            action="store_true",
            help="Revoke the user's tokens (those with --name only, if given) instead.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(options["username"])
        except User.DoesNotExist:
            raise CommandError(f"No user with {User.USERNAME_FIELD} {options['username']!r}.") from None
        if options["revoke"]:
            tokens = ApiToken.objects.active().filter(user=user)
            if options["name"]:
                tokens = tokens.filter(name=options["name"])
            revoked = 0
            for token in tokens:  # one by one, so each leaves the token cache
                token.revoke()
                revoked += 1
            self.stdout.write(f"Revoked {revoked} token(s) of {user}.")
            return
        _, plain = ApiToken.issue(user, name=options["name"])
        self.stdout.write(f"Token for {user} (shown once; keep it secret):")
        self.stdout.write(plain)
