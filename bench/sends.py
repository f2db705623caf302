"""What the send benchmarks share (broadcast_send.py, preferences_send.py, group_send.py): a
database and a Redis channel prefix of their own, the --users and --repeat arguments, Django
set up and migrated, the users they send to, and a count of what reached Redis.

The database is DATABASE_URL, by default var/bench.sqlite3; a PostgreSQL URL names a database
of the benchmark's own (e.g. postgres://postgres@127.0.0.1:5432/notify_bench), created if missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def start(description: str) -> argparse.Namespace:
    """Parse --users (10,000) and --repeat (3), then set Django up on the benchmark's database, migrated."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}")
    os.environ["NOTIFY_CHANNEL_PREFIX"] = f"notify-bench-{uuid.uuid4().hex[:6]}"
    (ROOT / "var").mkdir(exist_ok=True)
    if os.environ["DATABASE_URL"].startswith("postgres"):
        ensure_postgres_database(os.environ["DATABASE_URL"])

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return args


def ensure_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def users_named(prefix: str, count: int) -> list[int]:
    """The ids of ``count`` users whose names start with ``prefix``, created if missing."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    missing = count - User.objects.filter(username__startswith=prefix).count()
    if missing > 0:
        start = User.objects.count()
        User.objects.bulk_create([User(username=f"{prefix}{start + i}") for i in range(missing)], batch_size=2000)
    return list(User.objects.filter(username__startswith=prefix).order_by("pk").values_list("pk", flat=True)[:count])


class Published:
    """Counts the messages published on this run's channels (``patterns`` under its prefix), so
    that "published" means every message reached Redis, not only that send() returned."""

    def __init__(self, *patterns: str) -> None:
        import redis
        from django.conf import settings

        self.url = settings.REDIS_URL
        self._pubsub: Any = redis.Redis.from_url(self.url).pubsub(ignore_subscribe_messages=True)
        prefix = settings.NOTIFY["CHANNEL_PREFIX"]
        self._pubsub.psubscribe(*(f"{prefix}:{pattern}" for pattern in patterns))
        for _ in patterns:
            self._pubsub.get_message(timeout=1)  # the confirmations

    def expect(self, expected: int) -> tuple[list[int], threading.Event]:
        """Count the next ``expected`` messages in a thread: (the count so far, set when all came).
        Each call hands its own tally to its thread: a closure would read the next call's."""
        received = [0]
        all_received = threading.Event()

        def count() -> None:
            while received[0] < expected:
                if self._pubsub.get_message(timeout=1) is not None:
                    received[0] += 1
            all_received.set()

        threading.Thread(target=count, daemon=True).start()
        return received, all_received

    def close(self) -> None:
        self._pubsub.close()
