"""What per-user preferences cost a send to N users: ``notify.send`` to N users side by side
with and without the preferences step, in one run.

    .venv/bin/python bench/preferences_send.py [--users 10000] [--repeat 3]

Three variants, interleaved in each repeat:

- ``skipped``: send() with notify.preferences.deliveries answering without a query (what
  send() cost before preferences existed);
- ``none stored``: send() to N users of whom none has chosen anything (the usual case);
- ``all stored``: send() to N other users who each have a preferences row and three rules,
  one of which keeps one user in ten from getting this kind at all.

Each time is the send() call, publish included (outside a transaction, send() publishes
before it returns). Uses its own database (DATABASE_URL, default var/bench.sqlite3; for
PostgreSQL a database of its own, created if missing) and its own Redis channel prefix.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
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


def users_named(prefix: str, count: int) -> list[int]:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    missing = count - User.objects.filter(username__startswith=prefix).count()
    if missing > 0:
        start = User.objects.count()
        User.objects.bulk_create([User(username=f"{prefix}{start + i}") for i in range(missing)], batch_size=2000)
    return list(User.objects.filter(username__startswith=prefix).order_by("pk").values_list("pk", flat=True)[:count])


def give_rules(user_ids: list[int]) -> None:
    """A preferences row and three rules each; one user in ten wants kind "bench" nowhere."""
    from notify.models import NotificationPreferences, PreferenceRule

    if PreferenceRule.objects.filter(preferences_id__in=user_ids[:1]).exists():
        return
    NotificationPreferences.objects.bulk_create(
        [NotificationPreferences(user_id=uid) for uid in user_ids], batch_size=2000, ignore_conflicts=True
    )
    rules = []
    for index, uid in enumerate(user_ids):
        rules.append(PreferenceRule(preferences_id=uid, kind="chat", page=True, email=False))
        rules.append(PreferenceRule(preferences_id=uid, level="error", page=True, email=True))
        rules.append(PreferenceRule(preferences_id=uid, kind="bench", page=index % 10 != 0, email=False))
    PreferenceRule.objects.bulk_create(rules, batch_size=2000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.environ["DATABASE_URL"].startswith("postgres"):
        ensure_postgres_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    import notify
    from notify import preferences

    call_command("migrate", verbosity=0)
    plain = users_named("prefs-plain-", args.users)
    chosen = users_named("prefs-chosen-", args.users)
    give_rules(chosen)
    real = preferences.deliveries
    everywhere = preferences.Delivery(page=True, email=False)

    def without_queries(user_ids, level, kind, *, using="default"):  # type: ignore[no-untyped-def]
        return dict.fromkeys(user_ids, everywhere)

    print(f"{connection.vendor}, {args.users} recipients per send")
    times: dict[str, list[float]] = {"skipped": [], "none stored": [], "all stored": []}
    for run in range(args.repeat):
        for variant, recipients in (("skipped", plain), ("none stored", plain), ("all stored", chosen)):
            preferences.deliveries = without_queries if variant == "skipped" else real  # type: ignore[assignment]
            started = time.perf_counter()
            sent = notify.send(recipients, f"Bench {run}", kind="bench")
            elapsed = time.perf_counter() - started
            times[variant].append(elapsed)
            print(f"{variant:>12}: {elapsed * 1000:6.0f} ms, {len(sent)} notifications stored")
    preferences.deliveries = real  # type: ignore[assignment]
    # The step alone, without the insert's noise: read N users' preferences and decide each.
    for label, recipients in (("none stored", plain), ("all stored", chosen)):
        step = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            decided = preferences.deliveries(recipients, "info", "bench")
            step.append(time.perf_counter() - started)
        assert len(decided) == len(recipients)
        print(f"the preferences step alone, {label:>11}: median {statistics.median(step) * 1000:5.0f} ms")
    base = statistics.median(times["skipped"])
    for variant, measured in times.items():
        median = statistics.median(measured)
        print(f"median {variant:>12}: {median * 1000:6.0f} ms ({(median / base - 1) * 100:+.1f} % against skipped)")


if __name__ == "__main__":
    main()
