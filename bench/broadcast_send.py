"""How long a broadcast to N users takes: to everyone (one announcement, notify.announce) beside
to each user (``notify.send`` to all N: bulk insert, numbering, pipelined publish), in one run.

    .venv/bin/python bench/broadcast_send.py [--users 10000] [--repeat 3]

Its database and Redis prefix are its own (bench/sends.py). A subscriber counts the published
messages, so "published" means every message reached Redis.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sends import Published, start, users_named  # noqa: E402


def main() -> None:
    args = start(__doc__ or "")
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    import notify

    User = get_user_model()
    users_named("bench-", args.users)
    User.objects.exclude(username__startswith="bench-").update(is_active=False)
    active = User.objects.filter(is_active=True).count()

    published = Published("user:*", "announcements")
    print(f"{connection.vendor}, {active} active users, Redis {settings.REDIS_URL}")
    for run, how in enumerate(["announce", "send"] * args.repeat):
        received, all_received = published.expect(1 if how == "announce" else active)
        started = time.perf_counter()
        if how == "announce":  # what the admin's broadcast to everyone does (notify.sending.send_broadcast)
            notify.announce(f"Bench {run}")
            sent = active
        else:
            sent = len(notify.send(User.objects.filter(is_active=True), f"Bench {run}"))
        returned = time.perf_counter() - started
        all_received.wait(60)
        in_redis = time.perf_counter() - started
        print(
            f"{how:>8}: returned after {returned * 1000:.0f} ms for {sent} users; "
            f"all {received[0]} message(s) in Redis after {in_redis * 1000:.0f} ms"
        )
    published.close()


if __name__ == "__main__":
    main()
