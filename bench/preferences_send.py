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
before it returns). Its database and Redis prefix are its own (bench/sends.py).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sends import start, users_named  # noqa: E402


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
    args = start(__doc__ or "")
    from django.db import connection

    import notify
    from notify import preferences

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
