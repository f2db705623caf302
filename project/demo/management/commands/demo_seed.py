from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

# Demo logins: printed by `make run`. Never use these outside a local demo.
DEMO_USERS = [
    ("admin", "admin", True),
    ("alice", "alice", False),
    ("bob", "bob", False),
]


class Command(BaseCommand):
    help = "Create the demo users (if missing) and print their logins."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        for username, password, staff in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.is_staff = user.is_superuser = staff
            if created or not user.email:
                user.email = user.email or f"{username}@example.com"  # the demo's digests go to the console
                user.save()
        self.stdout.write("Demo logins (username / password):")
        for username, password, staff in DEMO_USERS:
            self.stdout.write(f"  {username} / {password}" + ("  (admin: /admin/)" if staff else ""))
