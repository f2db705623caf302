"""Churn under load (issue 5): N held polls, plus polls abandoned and replaced at a steady rate.

    .venv/bin/python bench/churn.py                 # N = 10,000, 500 churned polls/s for 60 s,
                                                    # 200 notifications/s meanwhile (~3 min)
    .venv/bin/python bench/churn.py --quick         # N = 200, 50/s for 5 s: the CI smoke version
    .venv/bin/python bench/churn.py --n 5000 --churn-rate 250
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/notify_bench .venv/bin/python bench/churn.py

One uvicorn worker (the default variant of bench/run.py) on loopback. The load
generator (bench/loadgen.py, a process of its own) takes a cursor for each of N
clients and holds a poll for each; then, for --duration seconds, it abandons
--churn-rate held polls a second mid-flight (closing their connections, as a closed
tab or a phone losing its network does) and replaces each at once with a new poll on
a new connection from the cursor that client had. Meanwhile this process sends
--send-rate notifications a second to random clients.

It reports errors by kind, held polls during the churn, server RSS before and after,
CPU, and whether every notification was received exactly once; then, the load
stopped, that the server's subscriptions went back to zero (the abandoned polls were
freed). Exit status 1 on any loss, duplicate, client error, server log error or
leftover subscription — never on a speed. The figures go to var/bench-churn-<db>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402 - after the path is set
    PRIMARY,
    VAR,
    Meter,
    Watcher,
    issue_tokens,
    log,
    paced_sends,
    percentile,
    prepare_users,
    read_meanwhile,
    reset_streams,
    setup_environment,
    wait_received,
    warm_up,
)
from stack import VARIANTS, LoadGen, Server, raise_fd_limit  # noqa: E402


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="clients, each holding one poll")
    parser.add_argument("--churn-rate", type=float, default=500.0, help="polls abandoned and replaced a second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of churn")
    parser.add_argument("--send-rate", type=float, default=200.0, help="notifications a second during the churn")
    parser.add_argument("--timeout", type=float, default=25.0, help="long poll timeout the clients ask for")
    parser.add_argument("--ramp-rate", type=float, default=2000.0)
    parser.add_argument("--ramp-limit", type=float, default=60.0, help="seconds to reach N held polls at most")
    parser.add_argument("--catch-up-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="N=200, 50/s for 5 s, 20 sends/s: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.churn_rate, args.duration, args.send_rate = 200, 50.0, 5.0, 20.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    setup_environment()
    prefix = f"notify-churn-{uuid.uuid4().hex[:6]}"
    os.environ["NOTIFY_CHANNEL_PREFIX"] = prefix

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings

    call_command("migrate", verbosity=0)
    user_ids = prepare_users(args.n)
    tokens_file = VAR / f"bench-churn-tokens-{args.n}.json"
    issue_tokens(user_ids, tokens_file)
    tokens = json.loads(tokens_file.read_text())
    reset_streams()
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    info = client.info()
    redis_pid = int(info["process_id"]) if Path(f"/proc/{info['process_id']}").exists() else None
    result: dict[str, Any] = {
        "vendor": connection.vendor,
        "n": args.n,
        "churn_rate": args.churn_rate,
        "duration": args.duration,
        "send_rate": args.send_rate,
        "command": " ".join([".venv/bin/python", "bench/churn.py", *sys.argv[1:]]),
    }
    log(
        f"churn: {connection.vendor}, N={args.n}, {args.churn_rate:g} churned polls/s for {args.duration:g} s, "
        f"{args.send_rate:g} notifications/s"
    )
    server = Server(
        VARIANTS[PRIMARY],
        args.n,
        env={
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "REDIS_URL": settings.REDIS_URL,
            "NOTIFY_CHANNEL_PREFIX": prefix,
            "DJANGO_DEBUG": "0",
        },
        log_path=VAR / "logs" / f"bench-churn-{args.n}.log",
    )
    loadgen = None
    watcher = Watcher(server, client, prefix)
    with override_settings(NOTIFY={**settings.NOTIFY, "CHANNEL_PREFIX": prefix}):
        server.start()
        try:
            warm_up(server, tokens[0])
            time.sleep(0.5)
            before = server.sample()
            loadgen = LoadGen(
                server.url,
                tokens_file,
                "long",
                timeout=args.timeout,
                interval=5.0,
                ramp_rate=args.ramp_rate,
                ramp_concurrency=100,
                catch_up_seconds=args.catch_up_seconds,
                max_seconds=args.ramp_limit + args.duration + args.catch_up_seconds + 120,
                log_path=VAR / "logs" / f"bench-churn-loadgen-{args.n}.log",
            )
            meter = Meter(server, loadgen, redis_pid)
            watcher.start()

            # 1. ramp to N held polls
            mark = meter.mark()
            loadgen.ask("start")
            while time.monotonic() - mark["t"] < args.ramp_limit:
                time.sleep(0.25)
                if watcher.held() >= args.n and loadgen.ask("stats")["snapshots"] >= args.n:
                    break
            time.sleep(1.0)
            stats = loadgen.ask("stats")
            result["ramp"] = {"held": watcher.held(), "errors": stats["errors"], **meter.since(mark)}
            log(
                f"  ramp: held {result['ramp']['held']} / {args.n} in {result['ramp']['seconds']:.1f} s, "
                f"errors {stats['errors']}"
            )

            # 2. churn and sends at once
            mark, requests_before = meter.mark(), stats["requests"]
            loadgen.ask(f"churn {args.churn_rate} {args.duration}")
            sends = paced_sends(user_ids, args.send_rate, args.duration, "churn", seed=args.n)
            stats = wait_received(loadgen, len(sends["sent"]), 10)
            churn_samples = [s for s in watcher.samples if s["t"] >= mark["t"]]
            result["churn"] = {
                "churned": stats["churned"],
                "requests_per_s": (stats["requests"] - requests_before) / (time.monotonic() - mark["t"]),
                "held_min": min((s["held"] for s in churn_samples), default=None),
                "held_max": max((s["held"] for s in churn_samples), default=None),
                "errors": stats["errors"],
                "error_samples": stats["error_samples"],
                "send_rate": sends["rate"],
                **meter.since(mark),
            }
            after = server.sample()
            result["rss_mb"] = {
                "before": before.rss_kb / 1024,
                "after": after.rss_kb / 1024,
                "peak": max((s["rss_kb"] for s in watcher.samples), default=0) / 1024,
            }
            log(
                f"  churn: {stats['churned']} polls abandoned and replaced, held {result['churn']['held_min']}"
                f"–{result['churn']['held_max']}, {result['churn']['requests_per_s']:.0f} answered requests/s, "
                f"errors {stats['errors']}, server CPU {result['churn']['server_cpu_pct']:.0f} %"
            )

            # 3. exactly once: what was not read during the run is read now, from each client's cursor
            receipts = {int(k): v for k, v in loadgen.ask("receipts", timeout=60)["receipts"].items()}
            missing = [pk for pk in sends["sent"] if pk not in receipts]
            late: dict[int, float] = {}
            caught_up: set[int] = set()
            if missing:
                index_of = {uid: i for i, uid in enumerate(user_ids)}
                clients = sorted({index_of[sends["recipients"][pk]] for pk in missing})
                answer = loadgen.ask(f"catchup {json.dumps(clients)}", timeout=args.catch_up_seconds + 30)
                late = {int(k): v for k, v in answer["late"].items()}
                late.update(read_meanwhile(loadgen, missing, late))
                caught_up = {user_ids[i] for i in answer["caught_up"]}
            latencies = [1000 * (receipts[pk] - t) for pk, t in sends["sent"].items() if pk in receipts]
            result["latency_ms"] = {
                "p50": percentile(latencies, 0.5),
                "p99": percentile(latencies, 0.99),
                "max": max(latencies, default=None),
            }
            result["sent"] = len(sends["sent"])
            result["late"] = len([pk for pk in missing if pk in late])
            result["lost"] = len([pk for pk in missing if pk not in late and sends["recipients"][pk] in caught_up])
            result["unverified"] = len(missing) - result["late"] - result["lost"]
        finally:
            watcher.halt.set()
            final = loadgen.stop() if loadgen is not None else None
            # 4. the load gone: every abandoned and answered poll must have let go of its
            # subscription (after the hub's UNSUBSCRIBE_DELAY).
            deadline = time.monotonic() + float(settings.NOTIFY.get("UNSUBSCRIBE_DELAY", 2.0)) + 10
            while watcher.held() and time.monotonic() < deadline:
                time.sleep(0.25)
            result["subscriptions_left"] = watcher.held()
            result["rss_mb_idle"] = server.sample().rss_kb / 1024
            result["exit_code"] = server.stop()
    result["duplicates"] = final["duplicates"] if final else None
    result["client_errors"] = final["errors"] if final else None
    result["server_log_problems"] = server.log_problems()

    problems = []
    if result["lost"] or result["unverified"]:
        problems.append(f"{result['lost']} lost, {result['unverified']} unverified of {result['sent']}")
    if result["duplicates"]:
        problems.append(f"{result['duplicates']} duplicates")
    if result["client_errors"]:
        problems.append(f"client errors {result['client_errors']}")
    if result["server_log_problems"]:
        problems.append(f"server log: {result['server_log_problems']}")
    if result["subscriptions_left"]:
        problems.append(f"{result['subscriptions_left']} subscriptions left after the load stopped")
    result["problems"] = problems
    out = VAR / f"bench-churn-{connection.vendor}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    log(
        f"  {result['sent']} sent: {result['late']} late, {result['lost']} lost, {result['unverified']} unverified, "
        f"{result['duplicates']} duplicates; latency p50 {ms(result['latency_ms']['p50'])} p99 "
        f"{ms(result['latency_ms']['p99'])} ms; subscriptions left {result['subscriptions_left']}; RSS "
        f"{result['rss_mb']['before']:.0f} -> {result['rss_mb']['after']:.0f} MB under load, "
        f"{result['rss_mb_idle']:.0f} MB idle after"
    )
    for problem in problems:
        log(f"FAIL {problem}")
    log("churn: OK" if not problems else "churn: FAILED")
    log(f"results in {out.relative_to(VAR.parent)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
