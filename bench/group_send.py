"""What grouping costs a send to N users (docs/grouping.md): a plain send, a grouped send that
starts a group for everyone (nothing open to collapse), and a grouped send that collapses into
everyone's open one, side by side in one run.

    .venv/bin/python bench/group_send.py [--users 10000] [--repeat 3]

Its database and Redis prefix are its own (bench/sends.py). Prints, per send, the time until
send() returned, until every message was in Redis (a subscriber counts them), and the SQL
statements the send ran.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sends import Published, start, users_named  # noqa: E402


def main() -> None:
    args = start(__doc__ or "")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    import notify
    from notify.models import Notification

    users = users_named("bench-", args.users)
    Notification.objects.filter(recipient_id__in=users).delete()  # each run starts from empty inboxes

    published = Published("user:*")

    # Everyone's open group, which every "collapsing" send continues (its count grows by one each
    # time); a "new group" send uses a key of its own. So the three can run in any order: each
    # round rotates it, and the median of each kind is printed at the end.
    notify.send(users, "{actors} liked it", kind="bench.like", group="post:open", actor="setup")
    print(f"{connection.vendor}, {len(users)} users, Redis {published.url}")
    kinds = ["plain", "grouped, new group", "grouped, collapsing"]
    times: dict[str, list[float]] = {how: [] for how in kinds}
    for run in range(args.repeat):
        for how in kinds[run % 3 :] + kinds[: run % 3]:
            received, all_received = published.expect(len(users))
            group = {"plain": None, "grouped, new group": f"post:new{run}", "grouped, collapsing": "post:open"}[how]
            options = {} if group is None else {"kind": "bench.like", "group": group, "actor": f"a{run}"}
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                sent = notify.send(users, "{actors} liked it" if group else "plain", **options)
                returned = time.perf_counter() - started
            all_received.wait(60)
            in_redis = time.perf_counter() - started
            times[how].append(returned)
            deletes = sum(1 for q in queries.captured_queries if q["sql"].startswith("DELETE"))
            print(
                f"{how:>20}: returned after {returned * 1000:5.0f} ms, all {received[0]} message(s) in Redis after "
                f"{in_redis * 1000:5.0f} ms; {len(queries)} statements ({deletes} DELETE); "
                f"group count {sent[0].group_count if sent else 0}"
            )
    for how in kinds:
        print(f"median {how:>20}: returned after {statistics.median(times[how]) * 1000:5.0f} ms")
    published.close()


if __name__ == "__main__":
    main()
