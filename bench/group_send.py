"""What grouping costs a send to N users (docs/grouping.md): a plain send, a grouped send that
starts a group for everyone (nothing open to collapse), and a grouped send that collapses into
everyone's open one, side by side in one run.

    .venv/bin/python bench/group_send.py [--users 10000] [--repeat 3]

Uses its own database (DATABASE_URL, default var/bench.sqlite3; for PostgreSQL give a database
of its own, e.g. postgres://postgres@127.0.0.1:5432/notify_bench, created if missing) and its own
Redis channel prefix. Prints, per send, the time until send() returned, until every message was
in Redis (a subscriber counts them), and the SQL statements the send ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
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

from bench.broadcast_send import ensure_postgres_database  # noqa: E402
from bench.preferences_send import users_named  # noqa: E402


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
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    import notify
    from notify.models import Notification

    call_command("migrate", verbosity=0)
    users = users_named("bench-", args.users)
    Notification.objects.filter(recipient_id__in=users).delete()  # each run starts from empty inboxes

    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    prefix = settings.NOTIFY["CHANNEL_PREFIX"]
    pubsub.psubscribe(f"{prefix}:user:*")
    pubsub.get_message(timeout=1)

    # Everyone's open group, which every "collapsing" send continues (its count grows by one each
    # time); a "new group" send uses a key of its own. So the three can run in any order: each
    # round rotates it, and the median of each kind is printed at the end.
    notify.send(users, "{actors} liked it", kind="bench.like", group="post:open", actor="setup")
    print(f"{connection.vendor}, {len(users)} users, Redis {settings.REDIS_URL}")
    kinds = ["plain", "grouped, new group", "grouped, collapsing"]
    times: dict[str, list[float]] = {how: [] for how in kinds}
    for run in range(args.repeat):
        for how in kinds[run % 3 :] + kinds[: run % 3]:
            received = [0]
            all_received = threading.Event()

            def count(received: list[int], all_received: threading.Event, expected: int) -> None:
                while received[0] < expected:
                    if pubsub.get_message(timeout=1) is not None:
                        received[0] += 1
                all_received.set()

            counter = threading.Thread(target=count, args=(received, all_received, len(users)), daemon=True)
            counter.start()
            group = {"plain": None, "grouped, new group": f"post:new{run}", "grouped, collapsing": "post:open"}[how]
            options = {} if group is None else {"kind": "bench.like", "group": group, "actor": f"a{run}"}
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                sent = notify.send(users, "{actors} liked it" if group else "plain", **options)
                returned = time.perf_counter() - started
            all_received.wait(60)
            published = time.perf_counter() - started
            times[how].append(returned)
            deletes = sum(1 for q in queries.captured_queries if q["sql"].startswith("DELETE"))
            print(
                f"{how:>20}: returned after {returned * 1000:5.0f} ms, all {received[0]} message(s) in Redis after "
                f"{published * 1000:5.0f} ms; {len(queries)} statements ({deletes} DELETE); "
                f"group count {sent[0].group_count if sent else 0}"
            )
    for how in kinds:
        print(f"median {how:>20}: returned after {statistics.median(times[how]) * 1000:5.0f} ms")
    pubsub.close()


if __name__ == "__main__":
    main()
