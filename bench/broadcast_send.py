"""How long a broadcast to N users takes: to everyone (one announcement, notify.announce) beside
to each user (``notify.send`` to all N: bulk insert, numbering, pipelined publish), in one run.

    .venv/bin/python bench/broadcast_send.py [--users 10000] [--repeat 3]

Uses its own database (DATABASE_URL, default var/bench.sqlite3; for PostgreSQL
give a database of its own, e.g. postgres://postgres@127.0.0.1:5432/notify_bench,
created if missing) and its own Redis channel prefix. A subscriber counts the
published messages, so "published" means every message reached Redis.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}")
os.environ["NOTIFY_CHANNEL_PREFIX"] = f"notify-bench-{uuid.uuid4().hex[:6]}"
(ROOT / "var").mkdir(exist_ok=True)


def ensure_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.environ["DATABASE_URL"].startswith("postgres"):
        ensure_postgres_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    import notify

    call_command("migrate", verbosity=0)
    User = get_user_model()
    missing = args.users - User.objects.filter(username__startswith="bench-").count()
    if missing > 0:
        start = User.objects.count()
        User.objects.bulk_create([User(username=f"bench-{start + i}") for i in range(missing)], batch_size=2000)
    User.objects.exclude(username__startswith="bench-").update(is_active=False)
    active = User.objects.filter(is_active=True).count()

    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    prefix = settings.NOTIFY["CHANNEL_PREFIX"]
    pubsub.psubscribe(f"{prefix}:user:*", f"{prefix}:announcements")
    pubsub.get_message(timeout=1)
    pubsub.get_message(timeout=1)

    print(f"{connection.vendor}, {active} active users, Redis {settings.REDIS_URL}")
    for run, how in enumerate(["announce", "send"] * args.repeat):
        # This run's tally and signal, handed to its thread: a closure would read
        # whatever the names hold when it runs, the next run's if this one timed out.
        received = [0]
        all_received = threading.Event()

        expected = 1 if how == "announce" else active

        def count(received: list[int], all_received: threading.Event, expected: int) -> None:
            while received[0] < expected:
                if pubsub.get_message(timeout=1) is not None:
                    received[0] += 1
            all_received.set()

        counter = threading.Thread(target=count, args=(received, all_received, expected), daemon=True)
        counter.start()
        started = time.perf_counter()
        if how == "announce":  # what the admin's broadcast to everyone does (notify.sending.send_broadcast)
            notify.announce(f"Bench {run}")
            sent = active
        else:
            sent = len(notify.send(User.objects.filter(is_active=True), f"Bench {run}"))
        returned = time.perf_counter() - started
        all_received.wait(60)
        published = time.perf_counter() - started
        print(
            f"{how:>8}: returned after {returned * 1000:.0f} ms for {sent} users; "
            f"all {received[0]} message(s) in Redis after {published * 1000:.0f} ms"
        )
    pubsub.close()


if __name__ == "__main__":
    main()
