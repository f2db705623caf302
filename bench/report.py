"""Turn bench/run.py's results into docs/benchmarks.md, a plot, and py-spy hot spots.

    .venv/bin/python bench/report.py [RESULTS.json ...]   # default: var/bench-results-*.json

The text between ``<!-- notes -->`` and ``<!-- /notes -->`` in the existing
docs/benchmarks.md (a reader's analysis) is kept when the file is rewritten.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOTES_START, NOTES_END = "<!-- notes -->", "<!-- /notes -->"
PACKAGES = [
    "Django",
    "uvicorn",
    "uvloop",
    "httptools",
    "h11",
    "granian",
    "hypercorn",
    "daphne",
    "gunicorn",
    "aiohttp",
    "redis",
    "psycopg",
    "py-spy",
]

# --- py-spy --------------------------------------------------------------------------------

FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame(raw: str) -> str:
    match = FRAME.match(raw)
    return f"{match['name']} ({match['file']})" if match else raw


def hot_spots(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of the busiest functions in a ``py-spy record --format raw --threads`` file.

    Stacks start with ``thread (<tid>): <name>``: the event loop runs in MainThread,
    notify.db's pool in notify-db_*, asgiref's and the servers' pools in others.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        name = frames[0].partition(": ")[2] if frames[0].startswith("thread (") else ""
        frames = [_frame(f) for f in frames[1:] if not f.startswith("process ")]
        total += samples
        if name == "MainThread":
            threads["MainThread (event loop)"] += samples
        elif name.startswith("notify-db"):
            threads["notify-db pool"] += samples
        else:
            threads["other threads"] += samples
        if frames:
            own[frames[-1]] += samples
            for frame in set(frames):
                inclusive[frame] += samples

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "threads": share(threads),
        "self": share(own),
        # Inclusive: the project's and Django's functions only, so the list says which path costs.
        "inclusive": share(
            Counter(
                {
                    k: v
                    for k, v in inclusive.items()
                    if any(p in k for p in ("notify/", "django/", "redis/", "project/"))
                }
            )
        ),
        # The poll path's own steps, for whoever optimizes it.
        "notify": share(Counter({k: v for k, v in inclusive.items() if "notify/" in k})),
        "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
    }


# --- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return {
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "memory": f"{mem_kb / 1024 / 1024:.0f} GB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": ", ".join(versions),
    }


# --- formatting ----------------------------------------------------------------------------


def num(value: Any, digits: int = 0, scale: float = 1.0) -> str:
    if value is None:
        return "–"
    return f"{value * scale:,.{digits}f}"


def errors_text(result: dict[str, Any]) -> str:
    client = result.get("client", {}).get("errors", {})
    parts = [f"{k} × {v}" for k, v in client.items()]
    if result.get("server_log_errors"):
        parts.append(f"server log: {result['server_log_errors']} lines")
    return ", ".join(parts) or "0"


def held_text(result: dict[str, Any]) -> str:
    if result["mode"] == "short":
        return "n/a (short polls)"
    return f"{num(result['ramp']['held'])} / {num(result['n'])}"


def summary_row(r: dict[str, Any]) -> str:
    if "skipped" in r or "error" in r:
        return f"| {r['variant']} | {num(r['n'])} | {r.get('skipped') or 'failed: ' + r['error']} |||||||||"
    lat, b = r["latency_ms"], r["broadcast"]
    return (
        f"| {r['variant']} | {num(r['n'])} | {held_text(r)} | {errors_text(r)} | "
        f"{num(r.get('late', 0))} / {r['lost']} / {num(r.get('unverified', 0))} / {r['client']['duplicates']} | "
        f"{num(lat['p50'])} | {num(lat['p99'])} | "
        f"{num(b['p99_s'], 2)} | {num(r.get('kb_per_held_poll'), 1)} | {num(r['after']['threads'])} |"
    )


def variant_table(rows: list[dict[str, Any]]) -> list[str]:
    done = [r for r in rows if "skipped" not in r and "error" not in r]
    out = []
    nchan = bool(done) and done[0]["mode"] == "nchan"
    if done:
        n = done[-1]["n"]
        command = done[-1]["command"].replace(str(n + 1000), "<N+1000>")
        command = command.replace(str(2 * n + 64), "<2N+64>").replace(str(n + 64), "<N+64>")
        out.append(f"Server: `{command}`")
        out.append("")
        names = [num(r["n"]) for r in done]
        out.append("| N | " + " | ".join(names) + " |")
        out.append("|---|" + "---|" * len(done))

        def line(title: str, cells: list[str]) -> None:
            out.append(f"| {title} | " + " | ".join(cells) + " |")

        line(
            "held polls (Nchan's subscribers)" if nchan else "held polls (server, in Redis)",
            [held_text(r) for r in done],
        )
        line("ramp time, s", [num(r["ramp"]["seconds"], 1) for r in done])
        line("errors (client; server log)", [errors_text(r) for r in done])
        line(
            "sent / late / lost / unverified / duplicates",
            [
                f"{num(r['sent_total'])} / {num(r.get('late', 0))} / {r['lost']} / {num(r.get('unverified', 0))} / "
                f"{r['client']['duplicates']}"
                for r in done
            ],
        )
        line("steady rate achieved, /s", [num(r["steady"]["rate"]) for r in done])
        for key in ("p50", "p95", "p99", "max"):
            line(f"latency {key}, ms", [num(r["latency_ms"][key]) for r in done])
        line(
            "broadcast: the publish (answered once every poll was) returned after, s"
            if nchan
            else "broadcast: send() returned after, s",
            [num(r["broadcast"]["send_seconds"], 2) for r in done],
        )
        for key, title in (("p50_s", "50 %"), ("p99_s", "99 %"), ("p100_s", "100 %")):
            line(f"broadcast: {title} received after, s", [num(r["broadcast"][key], 2) for r in done])
        line(
            "server RSS before → after ramp, MB",
            [f"{num(r['before']['rss_kb'], 0, 1 / 1024)} → {num(r['after']['rss_kb'], 0, 1 / 1024)}" for r in done],
        )
        line("**RSS per held poll, KB**", [f"**{num(r.get('kb_per_held_poll'), 1)}**" for r in done])
        line("server threads before → after", [f"{r['before']['threads']} → {r['after']['threads']}" for r in done])
        line("server open files after ramp", [num(r["after"]["fds"]) for r in done])
        line("Redis pub/sub connections of the server", [num(r.get("hub_connections")) for r in done])
        line(
            "server CPU ramp / steady / broadcast, %",
            [
                f"{num(r['ramp']['server_cpu_pct'])} / {num(r['steady']['server_cpu_pct'])} / "
                f"{num(r['broadcast']['server_cpu_pct'])}"
                for r in done
            ],
        )
        line(
            "load generator CPU ramp / steady / broadcast, %",
            [
                f"{num(r['ramp']['loadgen_cpu_pct'])} / {num(r['steady']['loadgen_cpu_pct'])} / "
                f"{num(r['broadcast']['loadgen_cpu_pct'])}"
                for r in done
            ],
        )
        line(
            "sender (publishing to Nchan) CPU steady / broadcast, %"
            if nchan
            else "sender (notify.send) CPU steady / broadcast, %",
            [f"{num(r['steady']['sender_cpu_pct'])} / {num(r['broadcast']['sender_cpu_pct'])}" for r in done],
        )
        line(
            "Redis CPU ramp / steady, %",
            [f"{num(r['ramp']['redis_cpu_pct'])} / {num(r['steady']['redis_cpu_pct'])}" for r in done],
        )
        line(
            "everything else on the machine ramp / steady / broadcast, %",
            [
                f"{num(r['ramp']['others_cpu_pct'])} / {num(r['steady']['others_cpu_pct'])} / "
                f"{num(r['broadcast']['others_cpu_pct'])}"
                for r in done
            ],
        )
        line("requests answered per s, steady", [num(r["steady"]["requests_per_s"]) for r in done])
    for r in rows:
        if "skipped" in r:
            out.append(f"\nN = {num(r['n'])}: {r['skipped']}.")
        elif "error" in r:
            out.append(f"\nN = {num(r['n'])}: **failed**: `{r['error']}`")
        elif r.get("server_log_sample"):
            sample = "; ".join(f"{count} × {line[:160]}" for line, count in r["server_log_sample"][:3])
            out.append(f"\nN = {num(r['n'])}, server log: `{sample}`")
    return out


def profile_section(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        for key, title in (
            ("profile_ramp", "during the ramp (clients taking a cursor, then holding a poll)"),
            ("profile_steady", "during steady sends"),
            ("profile_broadcast", "during a broadcast"),
        ):
            spots = r.get(key)
            if not spots:
                continue
            out.append(f"### {r['variant']}, N = {num(r['n'])}, {title}")
            out.append("")
            if "error" in spots:
                out.append(f"py-spy failed: `{spots['error']}`")
                out.append("")
                continue
            out.append(
                f"{spots['samples']} samples at 200 Hz (`{spots['file']}`). "
                "By thread: " + ", ".join(f"{name} {pct} %" for name, pct in spots["threads"]) + "."
            )
            out.append("")
            out.append("| self (leaf) | % | | inclusive (notify, Django, redis) | % |")
            out.append("|---|---|---|---|---|")
            for i in range(max(len(spots["self"]), len(spots["inclusive"]))):
                left = spots["self"][i] if i < len(spots["self"]) else ["", ""]
                right = spots["inclusive"][i] if i < len(spots["inclusive"]) else ["", ""]
                out.append(f"| `{left[0]}` | {left[1]} | | `{right[0]}` | {right[1]} |")
            out.append("")
            if spots.get("notify"):
                out.append(
                    "notify's own functions, inclusive: "
                    + ", ".join(f"`{name.split(' (')[0]}` {pct} %" for name, pct in spots["notify"][:12])
                    + "."
                )
                out.append("")
    return out


def targets_section(results: list[dict[str, Any]], variant: str = "uvicorn") -> list[str]:
    primary = [r for r in results if r["variant"] == variant and "skipped" not in r and "error" not in r]
    if not primary:
        return [f"No run of the variant {variant} to compare with the targets."]
    r = max(primary, key=lambda r: r["n"])
    n = num(r["n"])
    lat, b = r["latency_ms"], r["broadcast"]
    errs = sum(r["client"]["errors"].values()) + r["server_log_errors"]
    kb = r.get("kb_per_held_poll")

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("met" if ok else "**missed**")

    held = r["ramp"]["held"] or 0
    at = f"at N = {n}" + ("" if held >= r["n"] else f" ({num(held)} held)")

    def at_scale(ok: bool) -> str:
        """Met only if shown with 10,000 polls held."""
        if held >= 10_000:
            return verdict(ok)
        return "**missed**" if not ok else f"not shown: {num(held)} held"

    rows = [
        (
            "10,000 held polls, zero errors",
            f"{held_text(r)} held, {errs} errors",
            verdict(held >= 10_000 and errs == 0),
        ),
        (
            "zero loss, zero duplicates",
            f"{r['lost']} lost, {r['client']['duplicates']} duplicates of {num(r['sent_total'])}",
            verdict(r["lost"] == 0 and r["client"]["duplicates"] == 0),
        ),
        (
            "p99 delivery <= 50 ms at 200/s with 10,000 held",
            f"p99 {num(lat['p99'])} ms {at}",
            at_scale(lat["p99"] is not None and lat["p99"] <= 50),
        ),
        (
            "broadcast to 10,000: 99 % within 1 s",
            f"99 % after {num(b['p99_s'], 2)} s {at}",
            at_scale(b["p99_s"] is not None and b["p99_s"] <= 1.0),
        ),
        ("<= 20 KB RSS per held poll", f"{num(kb, 1)} KB {at}", verdict(kb is not None and kb <= 20)),
    ]
    who = (
        "The default variant (uvicorn, uvloop + httptools, `project.asgi:application`), clients with bearer tokens,"
        if variant == "uvicorn"
        else f"The variant {variant} ({r['label']}),"
    )
    out = [
        f"{who} at its largest N, {n}:",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    out += [f"| {a} | {b_} | {c} |" for a, b_, c in rows]
    return out


# A load generator at this share of its one core set the pace of the phase, not the server; a
# machine this busy (of 200 %: two cores) had no core left for anyone to go faster.
CLIENT_BOUND_PCT = 90.0
MACHINE_BUSY_PCT = 190.0


def ratio(notify: float | None, nchan: float | None) -> str:
    if notify is None or not nchan:
        return "–"
    return f"{notify / nchan:,.1f}×"


def flagged(pct: float | None, limit: float, flag: str) -> str:
    return num(pct) + (f" **({flag})**" if pct is not None and pct >= limit else "")


def client_cpu(r: dict[str, Any]) -> str:
    """The load generator's CPU in the steady phase and the broadcast, flagged where it set the pace."""
    return " / ".join(
        flagged(r[phase].get("loadgen_cpu_pct"), CLIENT_BOUND_PCT, "client-bound") for phase in ("steady", "broadcast")
    )


def nchan_section(results: list[dict[str, Any]]) -> list[str]:
    """Each notify variant beside Nchan at the same N, in the same invocation: notify / Nchan for
    p99 delivery, broadcast 99 % and memory per held poll, with the load generator's and the machine's CPU."""
    done = [r for r in results if "skipped" not in r and "error" not in r]
    nchan = {r["n"]: r for r in done if r["mode"] == "nchan"}
    pairs = [(r, nchan[r["n"]]) for r in done if r["mode"] == "long" and r["n"] in nchan]
    if not pairs:
        return []
    out = [
        (
            "Nchan (Debian's nginx + libnginx-mod-nchan, one worker; bench/nchan.py) with the same clients, N and "
            "phases, minutes apart in this run. Ratios are notify / Nchan: above 1, notify is slower or bigger. "
            "Nchan's latency is from the publish call (Nchan answers the publisher only once it has written the "
            "subscribers' answers), notify's from `send()` returning. *Load generator CPU*: % of its one core (one "
            f"process); at {CLIENT_BOUND_PCT:.0f} % or more the client, not the server, set the pace of that phase. "
            f"*Machine*: the busy share of both cores during the broadcast (of 200 %); at {MACHINE_BUSY_PCT:.0f} % "
            "or more nobody had a core to go faster. Either way the ratio then says less about the servers."
        ),
        "",
        (
            "| N | notify variant | p99 ms, notify / Nchan | ratio | broadcast 99 %, s, notify / Nchan | ratio | "
            "KB per held poll, notify / Nchan | ratio | lost / dups, notify; Nchan | load generator CPU steady / "
            "broadcast %, notify; Nchan | server CPU broadcast %, notify; Nchan | machine CPU broadcast %, notify; "
            "Nchan |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r, c in pairs:
        lat, clat = r["latency_ms"]["p99"], c["latency_ms"]["p99"]
        b, cb = r["broadcast"]["p99_s"], c["broadcast"]["p99_s"]
        kb, ckb = r.get("kb_per_held_poll"), c.get("kb_per_held_poll")
        machine = [flagged(x["broadcast"].get("machine_cpu_pct"), MACHINE_BUSY_PCT, "saturated") for x in (r, c)]
        out.append(
            f"| {num(r['n'])} | {r['variant']} | {num(lat, 1)} / {num(clat, 1)} | {ratio(lat, clat)} | "
            f"{num(b, 2)} / {num(cb, 2)} | {ratio(b, cb)} | {num(kb, 1)} / {num(ckb, 1)} | {ratio(kb, ckb)} | "
            f"{r['lost']} / {r['client']['duplicates']}; {c['lost']} / {c['client']['duplicates']} | "
            f"{client_cpu(r)}; {client_cpu(c)} | {num(r['broadcast']['server_cpu_pct'])}; "
            f"{num(c['broadcast']['server_cpu_pct'])} | {machine[0]}; {machine[1]} |"
        )
    return out


def auth_section(results: list[dict[str, Any]]) -> list[str]:
    """Each session-cookie variant beside its bearer-token twin (the same server, the same N,
    minutes apart in the same run): what browsers get, and what API clients get."""
    by_key = {(r["variant"], r["n"]): r for r in results}
    rows: list[dict[str, Any]] = []
    for r in results:
        if r.get("auth") == "session" or r["variant"].endswith("-session"):
            twin = by_key.get((r["variant"].removesuffix("-session"), r["n"]))
            rows += [twin, r] if twin is not None else [r]
    if not rows:
        return []
    out = [
        (
            "The same server and N, the clients authenticating with a bearer token (API clients) or with the "
            "Django session cookie of a logged-in user (browsers: the JavaScript client, the demo). *Sends/s*: the "
            "steady rate the sender achieved (two shared cores: below the rate asked, the rows did not carry the same "
            "load). Errors by status; *broadcast received*: users who had the broadcast when the run ended."
        ),
        "",
        (
            "| N | variant | clients | held | sends/s | errors | lost / dups | p50 ms | p99 ms | broadcast 99 %, s | "
            "broadcast received | KB / held poll | server CPU steady / broadcast, % |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        clients = "session cookie" if r.get("auth") == "session" or r["variant"].endswith("-session") else "token"
        if "skipped" in r or "error" in r:
            out.append(
                f"| {num(r['n'])} | {r['variant']} | {clients} | {r.get('skipped') or 'failed: ' + r['error']} "
                "||||||||||"
            )
            continue
        lat, b = r["latency_ms"], r["broadcast"]
        out.append(
            f"| {num(r['n'])} | {r['variant']} | {clients} | {held_text(r)} | {num(r['steady']['rate'])} | "
            f"{errors_text(r)} | "
            f"{r['lost']} / {r['client']['duplicates']} | {num(lat['p50'])} | {num(lat['p99'])} | "
            f"{num(b['p99_s'], 2)} | {num(b.get('received'))} / {num(b['recipients'])} | "
            f"{num(r.get('kb_per_held_poll'), 1)} | {num(r['steady']['server_cpu_pct'])} / "
            f"{num(b['server_cpu_pct'])} |"
        )
    return out


# --- the plot --------------------------------------------------------------------------------


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Four panels against N: polls held, p99 latency, RSS per held poll, broadcast time.
    A colour per variant, a line style per database."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullLocator

    done = [r for r in results if "skipped" not in r and "error" not in r]
    series = list(dict.fromkeys(r["variant"] for r in done))
    bases = list(dict.fromkeys(name.split(" (")[0] for name in series))
    colours = dict(zip(bases, plt.get_cmap("tab10").colors, strict=False))
    styles = {"": "-", "sqlite": "-", "postgresql": "--"}
    sizes = sorted({r["n"] for r in done})
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    panels = [
        (axes[0][0], "polls held (in Redis) after the ramp", lambda r: r["ramp"]["held"], False, None),
        (axes[0][1], "delivery latency p99 at 200/s (ms)", lambda r: r["latency_ms"]["p99"], True, 50),
        (axes[1][0], "server RSS per held poll (KB)", lambda r: r.get("kb_per_held_poll"), False, 20),
        (axes[1][1], "broadcast: 99 % received after (s)", lambda r: r["broadcast"]["p99_s"], True, 1),
    ]
    for ax, title, value, log, target in panels:
        for name in series:
            base, _, db = name.partition(" (")
            points = [(r["n"], value(r)) for r in done if r["variant"] == name and value(r) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", color=colours[base], linestyle=styles.get(db.rstrip(")"), ":"), label=name)
        if target is not None:
            ax.axhline(target, color="grey", linestyle=":", linewidth=1)
        if title.startswith("polls held"):
            ax.plot(sizes, sizes, color="grey", linestyle=":", linewidth=1)  # every poll held
        ax.set_title(title)
        ax.set_xlabel("N users, one poll each")
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.10g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(
        "notify: one server worker on 2 shared cores, loopback\n"
        "dotted grey: the targets (held: N itself); solid: SQLite, dashed: PostgreSQL; "
        "no point: not reached while the run lasted"
    )
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- the document ----------------------------------------------------------------------------


def code_note(results: list[dict[str, Any]]) -> list[str]:
    """Which code each run measured, when it changed during the invocation (others work in this tree)."""
    versions: dict[str, list[str]] = {}
    for r in results:
        if "code" in r:
            versions.setdefault(r["code"], []).append(f"{r['variant']} {num(r['n'])}")
    if len(versions) <= 1:
        return [f"Code measured: {next(iter(versions))}.", ""] if versions else []
    out = ["notify/ changed while this ran (others work in this tree); the code each run measured:", ""]
    out += [f"- {code}: {', '.join(runs)}" for code, runs in versions.items()]
    return [*out, ""]


def run_section(meta: dict[str, Any], everything: list[dict[str, Any]]) -> list[str]:
    """One invocation of bench/run.py: its command, its tables, its profiles."""
    results = [r for r in everything if not r.get("profiled")]
    profiled = [r for r in everything if r.get("profiled")]
    args = meta["args"]
    vendor = meta["vendor"]
    out = [
        f"## On {vendor}",
        "",
        f"Run on {meta['date']}, in {meta['seconds']} s, on commit {meta.get('code', 'unknown')}, with:",
        "",
        "```sh",
        meta["command"],
        "```",
        "",
        (
            f"Database: {meta['database']}. Redis: {meta['redis']}. Each run: one server worker process; N clients in "
            "one separate process (aiohttp, one ClientSession, `TCPConnector(limit=0)`, uvloop), each taking a cursor "
            f"and then holding one poll (`timeout={args['timeout']:g}`), asking again at once with the cursor it got; "
            f"{args['rate']:g} notifications/s for {args['duration']:g} s to random users among the N; then one "
            f"broadcast to all N. Held polls are counted {args['ramp_limit']:g} s after the ramp starts at the latest."
        ),
        "",
        *code_note(results),
        "### Against the targets",
        "",
        *targets_section(results),
        "",
        *(
            [*targets_section(results, "uvicorn-session"), ""]
            if any(r["variant"] == "uvicorn-session" for r in results)
            else []
        ),
        *(
            ["### Session cookies and bearer tokens side by side", "", *auth_section(results), ""]
            if auth_section(results)
            else []
        ),
        *(["### notify and Nchan side by side", "", *nchan_section(results), ""] if nchan_section(results) else []),
        "### All variants",
        "",
        (
            "Latency: from `notify.send()` returning in the sender to the client having read the answer "
            "(p50 / p99 in ms, steady phase). Broadcast: seconds from the `notify.send(queryset)` call until "
            "99 % of the N users had it. Late / lost / duplicates counted by notification id over every phase: *late* "
            "were not read while the run lasted but were by one more poll after it; *lost* not even then; "
            "*unverified*: not read, and the catch-up ran out of time before that client was done. A – for a broadcast "
            "share: not reached while the run lasted."
        ),
        "",
        (
            "| variant | N | held | errors | late / lost / unverified / dups | p50 ms | p99 ms | broadcast 99 %, s | "
            "KB / held poll | threads |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
        *[summary_row(r) for r in results],
        "",
    ]
    for variant in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == variant]
        out += [f"#### {variant}: {rows[0]['label']}", "", *variant_table(rows), ""]
    profiles = profile_section(profiled)
    if profiles:
        out += [
            f"### Where the server spends its time on {vendor} (py-spy)",
            "",
            (
                "In a run of its own after the measured ones (py-spy takes CPU from the same two cores), "
                "`--nonblocking` so the server is never paused, on the server's worker process. *Self*: the function "
                "on top of the stack; *inclusive*: on the stack anywhere. Threads: MainThread runs the event loop, "
                "notify-db the pool that runs the poll path's queries."
            ),
            "",
            *[line.replace("### ", "#### ", 1) if line.startswith("### ") else line for line in profiles],
        ]
    return out


def write_report(runs: list[dict[str, Any]], md_path: Path, png_path: Path) -> None:
    """``runs``: saved results of bench/run.py, one per database, each ``{"meta": ..., "results": ...}``."""
    notes = f"{NOTES_START}\n(no analysis yet)\n{NOTES_END}"
    if md_path.exists():
        old = md_path.read_text()
        if NOTES_START in old and NOTES_END in old:
            notes = old[old.index(NOTES_START) : old.index(NOTES_END) + len(NOTES_END)]
    everything = []
    for run in runs:
        for r in run["results"]:
            if not r.get("profiled"):
                everything.append({**r, "variant": f"{r['variant']} ({run['meta']['vendor']})"} if len(runs) > 1 else r)
    plot(everything, png_path)
    m = machine()
    out = [
        "# Benchmarks",
        "",
        (
            "<!-- Written by bench/run.py (bench/report.py) from var/bench-results-*.json; only the notes section is "
            "kept when it is rerun. -->"
        ),
        "",
        (
            f"- Machine: {m['cpu']}, {m['memory']}, {m['os']}, Python {m['python']}. Server, load generator, sender, "
            "Redis and the database share the two cores, and other people's test runs may too: every table gives "
            "each one's CPU, and *everything else on the machine*."
        ),
        f"- Packages: {m['packages']}.",
        "",
        "![p99 latency, RSS per held poll and broadcast time against N, per variant](img/benchmarks.png)",
        "",
        notes,
        "",
    ]
    for run in runs:
        out += run_section(run["meta"], run["results"])
    out += [
        "## How it is measured",
        "",
        (
            "- **held**: channels the server has subscribed in Redis under the run's own prefix (`PUBSUB CHANNELS`): a "
            "poll is counted once the server really holds it, not while it waits in a socket backlog."
        ),
        (
            "- **RSS per held poll**: (VmRSS after the ramp − VmRSS before it) / held polls, summed over the server's "
            "process tree, after one warm-up poll. **CPU**: utime + stime from /proc, in % of one core; *everything "
            "else* is the machine's busy time (/proc/stat) less server, load generator, sender and Redis: the "
            "database, the kernel's loopback work, and anyone else's processes."
        ),
        (
            "- **Session cookies** (`uvicorn-session`): each user has a session as `django.contrib.auth.login()` "
            "leaves it (user id, backend, session auth hash), written in bulk to the session engine's table and, "
            "for `cached_db`, to its cache; each client sends `Cookie: sessionid=<key>` and nothing else, and the "
            "server verifies it as any browser's: the session read, the user loaded, the auth hash compared. Each "
            "run first checks that a forged session (another auth hash) is answered 401."
        ),
        (
            "- **Loss and duplicates**: every id returned by `notify.send` must be read by the client exactly once. "
            "What a client has not read when the run ends (its polls failed, or the server was too far behind) is "
            "asked for once more by those clients, with their last cursor, after the load stops: found then, it is "
            "*late*; not found, *lost*."
        ),
        (
            "- **Nchan** (`nchan`, bench/nchan.py): Debian's nginx with libnginx-mod-nchan, one worker, loopback only, "
            "its config written into var/ for the run. Each client long-polls `/sub/user/<id>`: its user's channel and "
            "the broadcast channel in one request (Nchan's multiplexing), following Nchan's cursor (the answer's "
            "`Last-Modified` and `Etag`, sent back as `If-Modified-Since` and `If-None-Match`). The sender POSTs each "
            "notification's JSON (`Notification.as_dict()`'s keys, with an id) to the user's channel at the same rate; "
            "the broadcast is one POST to the broadcast channel, which client *i* counts as notification *id + i*, so "
            "loss and duplicates are counted as for notify. *Held*: Nchan's `subscribers` (`nchan_stub_status`). "
            "Latency is from the publish call: Nchan answers the publisher only once it has written the subscribers' "
            "answers. Polls are held until a message comes (`nchan_subscriber_timeout 0`), so Nchan's clients do not "
            "ask again every 25 s as notify's do: Nchan 1.3.6 loses messages on a multiplexed poll once polls end "
            "without a message (at N = 1,000: 271 and 277 of 7,000 lost in two runs with Nchan's own 408 after 25 s, "
            "301 with the clients abandoning their polls after 8 s; `--nchan-timeout server` or `client` runs so). "
            "The bench installs the module when it is missing (`make bench-deps`, or bench/run.py itself when "
            "run as root); where it cannot, the variant is reported not run, with the reason."
        ),
        (
            "- The steady phase uses the real `notify.send` in the orchestrator (insert, commit, Redis publish); the "
            "broadcast is the real `notify.announce` (one row, one message, for everyone), which client *i* reads "
            "as its own copy, counted as such for loss and duplicates. Every process is bounded in time and stopped "
            "by pid; all traffic is on 127.0.0.1. Raw results: `var/bench-results-<database>.json`; server logs: "
            "`var/logs/bench-*.log`."
        ),
        "",
        "Rerun:",
        "",
        "```sh",
        ".venv/bin/pip install -r bench/requirements.txt     # the other servers, py-spy, matplotlib",
        "make bench-deps                               # the same, and nginx + libnginx-mod-nchan (apt-get, as root)",
        ".venv/bin/python bench/run.py                  # every variant on SQLite (~30 min); rewrites this file",
        "DATABASE_URL=postgres://postgres@127.0.0.1:5432/notify_bench \\",
        "    .venv/bin/python bench/run.py --variants uvicorn,uvicorn-session   # tokens and sessions on PostgreSQL",
        ".venv/bin/python bench/run.py --quick          # smoke test, < 1 min: exit 1 on loss, duplicate or error",
        ".venv/bin/python bench/run.py --sizes 1000 --variants uvicorn,granian --no-write",
        "# bearer tokens and session cookies side by side, the same server in one run (N = 1,000 to 10,000):",
        ".venv/bin/python bench/run.py --variants uvicorn,uvicorn-session --no-write",
        "# notify beside Nchan, the same clients, N and phases: the ratios notify / Nchan are printed at the end",
        "# (and written here by a run that writes)",
        ".venv/bin/python bench/run.py --sizes 1000 --variants uvicorn,nchan --no-write --no-profile",
        "# the same at 10,000, tokens and sessions, with the machine to itself (~10 min):",
        ".venv/bin/python bench/run.py --sizes 10000 --variants uvicorn,uvicorn-session,nchan --no-write --no-profile",
        ".venv/bin/python bench/report.py               # rewrite this file from the saved results",
        "```",
        "",
    ]
    md_path.write_text("\n".join(out))


def saved_runs() -> list[dict[str, Any]]:
    """The latest full results saved for each database, SQLite first."""
    runs = [json.loads(path.read_text()) for path in sorted((ROOT / "var").glob("bench-results-*.json"))]
    return sorted(runs, key=lambda run: run["meta"]["vendor"] != "sqlite")


def main() -> None:
    runs = [json.loads(Path(p).read_text()) for p in sys.argv[1:]] or saved_runs()
    write_report(runs, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "img" / "benchmarks.png")


if __name__ == "__main__":
    main()
