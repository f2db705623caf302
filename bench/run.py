"""The benchmark anyone can rerun: held polls, delivery latency, broadcast, loss, memory and CPU.

    .venv/bin/python bench/run.py              # every variant at N = 1000, 5000, 10000 (~30 min);
                                               # writes docs/benchmarks.md and docs/img/benchmarks.png
    .venv/bin/python bench/run.py --quick      # smoke test: N = 200, uvicorn with tokens and with
                                               # sessions, < 1 min; exits 1 on any loss, duplicate or
                                               # error (never on a speed)
    .venv/bin/python bench/run.py --sizes 1000 --variants uvicorn,uvicorn-session --no-write
                                               # bearer tokens and session cookies side by side
    .venv/bin/python bench/run.py --sizes 1000 --variants uvicorn,nchan --no-write
                                               # notify beside Nchan (bench/nchan.py), with the
                                               # ratios notify / Nchan
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/notify_bench .venv/bin/python bench/run.py

For each variant (a server, a way of polling and a way of authenticating, see
bench/stack.py) and each N it starts the real stack on loopback: the server as a
process of its own (one worker), Redis at REDIS_URL (default 127.0.0.1:6379) under a
channel prefix of its own, and the database (DATABASE_URL; default the SQLite file
var/bench-run.sqlite3; a PostgreSQL database is created if missing; a database named
``test`` is refused). Then:

1. ramp: N clients in a separate process (bench/loadgen.py) each take a cursor and hold
   a poll; "held" is what the server has subscribed in Redis, so it counts polls the
   server really holds, not requests sitting in a socket backlog. Each client is one
   user and sends that user's credential with every poll: a bearer token (API
   clients), or for ``uvicorn-session`` the session cookie of a logged-in user
   (browsers: the JavaScript client, the demo), which the server verifies as it
   would any browser's;
2. steady: ``notify.send()`` to a random one of the N users at --rate a second for
   --duration seconds; latency is from ``send()`` returning here to the client having
   read the answer (both CLOCK_MONOTONIC);
3. broadcast: one ``notify.announce()`` to everyone (stored once, one message); the time
   from the call until 50 / 99 / 100 % of the N clients have it;
4. every notification sent must be received exactly once, by id.

The ``nchan`` variant is not notify but Nchan (Debian's nginx + libnginx-mod-nchan,
installed here when missing and run as root; bench/nchan.py), measured the same way
at the same N beside the default: the same load generator in ``--mode nchan``, the
sender publishing to Nchan instead of calling ``notify.send()``.

Server RSS and threads are read from /proc before and after the ramp; server, load
generator and sender CPU for each phase. Every run is bounded in time, every process
is ours and is stopped by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import resource
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import receipt_key  # noqa: E402 - needs the path above
from stack import (  # noqa: E402 - needs the path above
    BIN,
    VARIANTS,
    LoadGen,
    Server,
    auth_headers,
    cpu_of,
    machine_cpu,
    raise_fd_limit,
)

VAR = ROOT / "var"
DEFAULT_DATABASE_URL = f"sqlite:///{VAR / 'bench-run.sqlite3'}"
USER_PREFIX = "bench-"
PRIMARY = "uvicorn"
SESSION = "uvicorn-session"  # the default variant's clients with session cookies: run beside it at every N
TWIN = "uvicorn-stock-gc"
METRICS = "uvicorn-metrics"  # the default with NOTIFY["METRICS"] on: beside it, the metrics' cost
NCHAN = "nchan"  # not notify: Nchan, at every N beside the default, for the ratios (bench/nchan.py)
# The keys of the bench's sessions start with this, so that the next run can delete them.
SESSION_KEY_MARK = "bench"

TARGETS = {
    "held": "10,000 held polls, zero errors",
    "loss": "zero loss, zero duplicates",
    "p99": "p99 delivery <= 50 ms at 200/s with 10,000 held",
    "broadcast": "broadcast to 10,000: 99 % within 1 s",
    "memory": "<= 20 KB RSS per held poll",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], fraction: float) -> float | None:
    """The smallest value with at least ``fraction`` of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def ensure_postgres_database(url: str) -> None:
    import psycopg

    name = database_name(url)
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


# --- the data: users, tokens, streams ------------------------------------------------------


def prepare_users(count: int) -> list[int]:
    """Ids of ``count`` bench users, in pk order (created if missing)."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    have = User.objects.filter(username__startswith=USER_PREFIX).count()
    if have < count:
        User.objects.bulk_create(
            [User(username=f"{USER_PREFIX}{i:06d}", password="!") for i in range(have, count)], batch_size=2000
        )
    return list(User.objects.filter(username__startswith=USER_PREFIX).order_by("pk").values_list("pk", flat=True))[
        :count
    ]


def issue_tokens(user_ids: list[int], path: Path) -> None:
    """A fresh bearer token per user, bulk-created with ApiToken's own hashing; plain texts to ``path``."""
    from notify.models import ApiToken

    ApiToken.objects.filter(user_id__in=user_ids, name="bench").delete()
    rows, plain = [], []
    for uid in user_ids:
        key, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        # As ApiToken.issue() stores it: the SHA-256 of the secret.
        rows.append(
            ApiToken(user_id=uid, name="bench", key=key, secret_hash=hashlib.sha256(secret.encode()).hexdigest())
        )
        plain.append(f"{ApiToken.PREFIX}_{key}_{secret}")
    ApiToken.objects.bulk_create(rows, batch_size=2000)
    path.write_text(json.dumps(plain))


def session_store_class() -> Any:
    """The SessionStore of settings.SESSION_ENGINE, if its sessions live in a database table
    (``db``, ``cached_db``): the bench writes them there in bulk."""
    from importlib import import_module

    from django.conf import settings

    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store_class, "get_model_class"):
        raise ValueError(
            f"SESSION_ENGINE {settings.SESSION_ENGINE!r}: the session variants need a database-backed engine "
            "(django.contrib.sessions.backends.db or cached_db)"
        )
    return store_class


def logged_in_session(user: Any, backend: str) -> dict[str, str]:
    """What django.contrib.auth.login() stores in a new session for ``user``: its id, its
    backend, and its session auth hash, which get_user() checks on every request."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    return {
        SESSION_KEY: user._meta.pk.value_to_string(user),
        BACKEND_SESSION_KEY: backend,
        HASH_SESSION_KEY: user.get_session_auth_hash(),
    }


def store_sessions(sessions: list[tuple[str, dict[str, str]]]) -> None:
    """Rows of the session table, in bulk, as SessionStore.create_model_instance() makes them."""
    store_class = session_store_class()
    model = store_class.get_model_class()
    store = store_class()
    expire_date = store.get_expiry_date()  # no custom expiry: now + SESSION_COOKIE_AGE
    model.objects.bulk_create(
        [model(session_key=key, session_data=store.encode(data), expire_date=expire_date) for key, data in sessions],
        batch_size=2000,
    )


def new_session_key() -> str:
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.utils.crypto import get_random_string

    # As SessionBase._get_new_session_key() makes them (32 characters), marked as the bench's.
    return SESSION_KEY_MARK + get_random_string(32 - len(SESSION_KEY_MARK), VALID_KEY_CHARS)


def issue_sessions(user_ids: list[int]) -> list[tuple[str, dict[str, str]]]:
    """A fresh logged-in session per user, ``(session key, session data)`` in ``user_ids``' order.

    The data is what login() leaves in the session (``logged_in_session``), written in
    bulk to the session engine's table (login() itself costs several queries a user);
    the server verifies them as it verifies any browser's session: read from the
    session engine, the user loaded by the backend, the auth hash compared. The
    previous run's bench sessions are deleted first.
    """
    from django.conf import settings
    from django.contrib.auth import get_user, get_user_model
    from django.core.cache import caches

    store_class = session_store_class()
    model = store_class.get_model_class()
    backends = settings.AUTHENTICATION_BACKENDS
    if len(backends) != 1:
        # login() without a backend takes the only one configured; with several, the view names it.
        raise ValueError(f"the session variants log users in with the only backend; {len(backends)} are configured")
    model.objects.filter(session_key__startswith=SESSION_KEY_MARK).delete()
    users = get_user_model().objects.in_bulk(user_ids)
    sessions = [(new_session_key(), logged_in_session(users[uid], backends[0])) for uid in user_ids]
    store_sessions(sessions)
    # Django's own verification, the one the server runs, on the first and the last.
    for (key, _), uid in [(sessions[0], user_ids[0]), (sessions[-1], user_ids[-1])]:
        store = store_class(key)
        found = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]  # reads .session only
        if hasattr(store, "cache_key"):
            caches[settings.SESSION_CACHE_ALIAS].delete(store.cache_key)  # cached here under our own prefix
        if found.pk != uid:
            raise RuntimeError(f"bench session {key[:8]}... is not user {uid}'s for Django: {found!r}")
    return sessions


@contextlib.contextmanager
def sessions_cached_for(sessions: list[tuple[str, dict[str, str]]], prefix: str) -> Iterator[None]:
    """A cache-backed session engine (``cached_db``): the sessions in the server's cache,
    as login()'s save() leaves them there, for as long as the run lasts.

    The server's cache has a key prefix of its own (project/settings.py: the run's
    channel prefix), so what login() would have cached is written here under it. Without
    this, each client's first poll would read its session from the table instead.
    """
    from django.conf import settings
    from django.core.cache import caches

    store_class = session_store_class()
    if not hasattr(store_class, "cache_key"):
        yield  # the table is all there is
        return
    cache = caches.create_connection(settings.SESSION_CACHE_ALIAS)
    cache.key_prefix = prefix
    entries = {store_class(key).cache_key: data for key, data in sessions}
    cache.set_many(entries, store_class().get_expiry_age())
    try:
        yield
    finally:
        cache.delete_many(list(entries))
        cache.close()


def forged_session(user_id: int) -> str:
    """A session key for ``user_id`` whose auth hash is not the user's: any server that
    verifies sessions refuses it (and flushes it)."""
    from django.conf import settings
    from django.contrib.auth import HASH_SESSION_KEY, get_user_model

    user = get_user_model().objects.get(pk=user_id)
    data = {**logged_in_session(user, settings.AUTHENTICATION_BACKENDS[0]), HASH_SESSION_KEY: "0" * 64}
    key = new_session_key()
    store_sessions([(key, data)])
    return key


def drop_session(key: str, prefix: str) -> None:
    """A bench session gone from the table and from the server's cache (``prefix``), whatever
    the server did with it (a server that refuses a forged session normally flushes it)."""
    from django.conf import settings
    from django.core.cache import caches

    store_class = session_store_class()
    store_class.get_model_class().objects.filter(session_key=key).delete()
    if hasattr(store_class, "cache_key"):
        cache = caches.create_connection(settings.SESSION_CACHE_ALIAS)
        cache.key_prefix = prefix
        cache.delete(store_class(key).cache_key)
        cache.close()


def session_cookie(key: str) -> str:
    from django.conf import settings

    return f"{settings.SESSION_COOKIE_NAME}={key}"


def reset_streams() -> None:
    """Every variant starts from empty streams: no notifications or announcements, every cursor at 0."""
    from django.db import connection

    from notify.models import Announcement, AnnouncementRead, AnnouncementsHead, Inbox, Notification

    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for model in (Notification, AnnouncementRead, Announcement):
            cursor.execute(f"DELETE FROM {quote(model._meta.db_table)}")
        cursor.execute(
            f"UPDATE {quote(Inbox._meta.db_table)} SET {quote('last_seq')} = 0, {quote('announcements_read')} = 0"
        )
        cursor.execute(f"UPDATE {quote(AnnouncementsHead._meta.db_table)} SET {quote('last_seq')} = 0")


# --- one run ---------------------------------------------------------------------------------


class Watcher(threading.Thread):
    """Samples the server and its held polls every ``period`` seconds while a run lasts."""

    def __init__(
        self,
        server: Any,
        redis_client: Any,
        prefix: str,
        period: float = 1.0,
        held: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.server, self.redis, self.prefix, self.period = server, redis_client, prefix, period
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()
        self.count_held = held  # a server that says itself how many polls it holds (Nchan)

    def held(self) -> int:
        if self.count_held is not None:
            return self.count_held()
        return len(self.redis.pubsub_channels(f"{self.prefix}:user:*"))

    def run(self) -> None:
        while not self.halt.wait(self.period):
            # A missed sample is no reason to stop a run.
            with contextlib.suppress(Exception):
                self.samples.append({"t": time.monotonic(), "held": self.held(), **self.server.sample().as_dict()})


def warm_up(server: Server, credential: str, auth: str = "token", refused: str | None = None) -> None:
    """One snapshot and one short held poll, so that thread pools and the hub exist before 'RSS before'.

    ``refused``: a credential the server must answer 401 (a forged session): proof that
    the clients' credentials are really verified, not merely present.
    """
    headers = auth_headers(auth, credential)
    with urllib.request.urlopen(urllib.request.Request(f"{server.url}/notify/poll", headers=headers), timeout=10) as r:
        cursor = json.loads(r.read())["cursor"]
    url = f"{server.url}/notify/poll?after={cursor}&timeout=0.3"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        r.read()
    if refused is None:
        return
    request = urllib.request.Request(f"{server.url}/notify/poll", headers=auth_headers(auth, refused))
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            status = r.status
    except urllib.error.HTTPError as error:
        status = error.code
    if status != 401:
        raise RuntimeError(f"a forged {auth} credential was answered {status}, not 401: the server does not verify it")


def paced_sends(user_ids: list[int], rate: float, duration: float, title: str, seed: int) -> dict[str, Any]:
    """``notify.send`` to a random user at ``rate`` a second; each id with the time send() returned."""
    from django.contrib.auth import get_user_model

    import notify

    User = get_user_model()

    def send(user_id: int, i: int) -> int:
        (created,) = notify.send(User(pk=user_id), title, data={"i": i})
        return created.pk

    return paced(user_ids, rate, duration, seed, send)


def paced(
    user_ids: list[int], rate: float, duration: float, seed: int, send: Callable[[int, int], int]
) -> dict[str, Any]:
    """``send(user id, i)`` to a random user at ``rate`` a second; each id it returns with the time it
    returned (``sent``) and the time it was called (``called``)."""
    rng = random.Random(seed)
    sent: dict[int, float] = {}
    called: dict[int, float] = {}
    recipients: dict[int, int] = {}
    count = int(rate * duration)
    worst_lag = 0.0
    t0 = time.monotonic()
    for i in range(count):
        due = t0 + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        else:
            worst_lag = max(worst_lag, now - due)
        user_id = rng.choice(user_ids)
        start = time.monotonic()
        nid = send(user_id, i)
        sent[nid] = time.monotonic()
        called[nid] = start
        recipients[nid] = user_id
    elapsed = time.monotonic() - t0
    return {
        "sent": sent,
        "called": called,
        "recipients": recipients,
        "rate": count / elapsed if elapsed else 0.0,
        "worst_lag": worst_lag,
    }


def ramp(loadgen: LoadGen, held: Callable[[], int] | None, n: int, deadline: float) -> float:
    """Start the clients; return once ``held()`` polls are held and every client has its first
    cursor (short polling, ``held`` None: every client has it), or the ramp stalls, or at
    ``deadline``. Seconds it took."""
    started = time.monotonic()
    loadgen.ask("start")
    best, best_at = -1, started
    while True:
        time.sleep(0.25)
        stats = loadgen.ask("stats")
        progress = stats["snapshots"] if held is None else held()
        now = time.monotonic()
        if progress > best:
            best, best_at = progress, now
        if progress >= n and stats["snapshots"] >= n:
            break
        if now > deadline or (stats["started"] >= n and now - best_at > 15):
            break  # stalled: report what was reached
    return time.monotonic() - started


def wait_received(loadgen: LoadGen, expected: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = loadgen.ask("stats")
        if stats["received"] >= expected or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


class Spy:
    """py-spy on the server for ``seconds``, in the background; ``hot_spots()`` when it is done.

    ``--nonblocking``: the server is never paused, at the price of a few torn stacks.
    """

    def __init__(self, pid: int, seconds: float, name: str) -> None:
        from django.db import connection

        self.path = VAR / f"bench-profile-{connection.vendor}-{name}.txt"
        self.log_path = self.path.with_suffix(".log")
        self.seconds = seconds
        command = [
            str(ROOT / ".venv" / "bin" / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--threads",
            "--output",
            str(self.path),
        ]
        with open(self.log_path, "wb") as spy_log:
            self.process = subprocess.Popen(command, stdout=spy_log, stderr=subprocess.STDOUT)
        time.sleep(0.5)  # attaching

    def hot_spots(self) -> dict[str, Any]:
        try:
            self.process.wait(self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.returncode != 0 or not self.path.exists():
            return {"error": f"py-spy exited with {self.process.returncode}: {self.log_path.read_text()[-500:]}"}
        from report import hot_spots

        return hot_spots(self.path)


def my_cpu() -> float:
    """CPU seconds of this process: the sender."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """CPU of everything in a phase, in % of one core: the server, the load generator, this
    process (the sender), Redis, and whatever else the machine did meanwhile ("others":
    PostgreSQL, the kernel's loopback work, other users of the machine)."""

    def __init__(self, server: Server, loadgen: LoadGen, redis_pid: int | None) -> None:
        self.server, self.loadgen, self.redis_pid = server, loadgen, redis_pid

    def mark(self) -> dict[str, float]:
        busy, _ = machine_cpu()
        return {
            "t": time.monotonic(),
            "server": self.server.sample().cpu,
            "loadgen": self.loadgen.cpu(),
            "sender": my_cpu(),
            "redis": cpu_of(self.redis_pid),
            "machine": busy,
        }

    def since(self, start: dict[str, float]) -> dict[str, float]:
        end = self.mark()
        seconds = end["t"] - start["t"]
        pct = {
            f"{k}_cpu_pct": 100.0 * (end[k] - start[k]) / seconds if seconds > 0 else 0.0
            for k in ("server", "loadgen", "sender", "redis", "machine")
        }
        pct["others_cpu_pct"] = pct["machine_cpu_pct"] - sum(
            pct[f"{k}_cpu_pct"] for k in ("server", "loadgen", "sender", "redis")
        )
        pct["seconds"] = seconds
        return pct


def run_one(
    variant_name: str, n: int, ctx: dict[str, Any], args: argparse.Namespace, profiled: bool = False
) -> dict[str, Any]:
    """One variant at one N. ``profiled``: py-spy the server in every phase (a run of its own,
    kept out of the tables, since py-spy takes CPU from the same two cores)."""
    from django.test import override_settings

    import notify

    variant = VARIANTS[variant_name]
    user_ids = ctx["user_ids"][:n]
    prefix = f"{ctx['prefix']}-{variant_name}-{n}"
    result: dict[str, Any] = {
        "variant": variant_name,
        "label": variant.label,
        "n": n,
        "mode": variant.mode,
        "auth": variant.auth,
        "profiled": profiled,
    }
    if variant.auth == "session":
        credentials = [session_cookie(key) for key, _ in ctx["sessions"][:n]]
    else:
        credentials = ctx["tokens"][:n]
    credentials_file = VAR / f"bench-{variant.auth}s-{n}.json"
    credentials_file.write_text(json.dumps(credentials))
    reset_streams()
    server = Server(
        variant,
        n,
        env={
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "REDIS_URL": ctx["redis_url"],
            "NOTIFY_CHANNEL_PREFIX": prefix,
            "DJANGO_DEBUG": "0",
        },
        log_path=VAR / "logs" / f"bench-{variant_name}-{n}{'-profiled' if profiled else ''}.log",
    )
    result["command"] = " ".join(part.removeprefix(f"{BIN}/") for part in variant.command(server.port, n))
    sent_all: dict[int, float] = {}  # notification id (loadgen.receipt_key) -> when send() returned
    recipient_of: dict[int, int] = {}  # notification id (loadgen.receipt_key) -> user id
    long = variant.mode == "long"

    def spy_name(phase: str) -> str:
        return phase if variant_name == PRIMARY else f"{variant_name}-{phase}"

    with contextlib.ExitStack() as during_run:
        # With metrics on the sender stamps each message with its publish time (notify.metrics).
        metrics_on = {"METRICS": True} if ("NOTIFY_METRICS", "1") in variant.env else {}
        during_run.enter_context(
            override_settings(NOTIFY={**ctx["notify_settings"], "CHANNEL_PREFIX": prefix, **metrics_on})
        )
        forged = None
        if variant.auth == "session":
            during_run.enter_context(sessions_cached_for(ctx["sessions"][:n], prefix))
            forged_key = forged_session(user_ids[0])
            during_run.callback(drop_session, forged_key, prefix)
            forged = session_cookie(forged_key)
        started = time.monotonic()
        result["code"] = code_version()  # notify/ may change between runs: others work in this tree
        server.start()
        result["start_seconds"] = round(time.monotonic() - started, 2)
        watcher = Watcher(server, ctx["redis"], prefix)
        loadgen = None
        try:
            warm_up(server, credentials[0], variant.auth, refused=forged)
            time.sleep(0.5)
            before = server.sample()
            result["before"] = before.as_dict()
            result["processes"] = len(before.pids)
            loadgen = LoadGen(
                server.url,
                credentials_file,
                variant.mode,
                auth=variant.auth,
                timeout=args.timeout,
                interval=args.interval,
                ramp_rate=args.ramp_rate,
                ramp_concurrency=args.ramp_concurrency,
                catch_up_seconds=args.catch_up_seconds,
                max_seconds=args.max_run_seconds,
                log_path=VAR / "logs" / f"bench-loadgen-{variant_name}-{n}.log",
            )
            meter = Meter(server, loadgen, ctx["redis_pid"])
            watcher.start()

            # 1. ramp: every client takes a cursor, then holds a poll
            spy = Spy(server.worker_pid(), 6, spy_name("ramp")) if profiled else None
            mark = meter.mark()
            ramp_seconds = ramp(loadgen, watcher.held if long else None, n, mark["t"] + args.ramp_limit)
            if spy is not None:
                result["profile_ramp"] = spy.hot_spots()
            time.sleep(1.0)
            held = watcher.held() if long else None
            after = server.sample()
            stats = loadgen.ask("stats")
            result["ramp"] = {
                "seconds": round(ramp_seconds, 2),
                "held": held,
                "client_in_flight": stats["in_flight"],
                "snapshots": stats["snapshots"],
                "errors": stats["errors"],
                **meter.since(mark),
            }
            result["after"] = after.as_dict()
            result["hub_connections"] = sum(
                1 for client in ctx["redis"].client_list() if client.get("name") == f"{prefix}:hub"
            )
            if held:
                result["kb_per_held_poll"] = (after.rss_kb - before.rss_kb) / held
                result["threads_per_held_poll"] = (after.threads - before.threads) / held
            log(
                f"  ramp: held {held} / {n} in {ramp_seconds:.1f} s, in flight {stats['in_flight']}, "
                f"RSS {before.rss_kb / 1024:.0f} -> {after.rss_kb / 1024:.0f} MB, threads {after.threads}, "
                f"errors {stats['errors']}"
            )

            # 2. steady sends
            spy = Spy(server.worker_pid(), min(args.duration, 5), spy_name("steady")) if profiled else None
            mark, r0 = meter.mark(), stats["requests"]
            steady = paced_sends(user_ids, args.rate, args.duration, "steady", seed=n)
            cpu = meter.since(mark)
            if spy is not None:
                result["profile_steady"] = spy.hot_spots()
            sent_all.update(steady["sent"])
            recipient_of.update(steady["recipients"])
            stats = wait_received(loadgen, len(sent_all), args.interval + 5 if not long else 5)
            result["steady"] = {
                "sent": len(steady["sent"]),
                "rate": steady["rate"],
                "sender_worst_lag_ms": 1000 * steady["worst_lag"],
                **cpu,
                "requests_per_s": (stats["requests"] - r0) / (time.monotonic() - mark["t"]),
                # The server's CPU per poll answered (each answer is followed by the client's next poll).
                "server_cpu_ms_per_request": 10
                * cpu["server_cpu_pct"]
                * cpu["seconds"]
                / max(1, stats["requests"] - r0),
                "held_min": min((s["held"] for s in watcher.samples if s["t"] >= mark["t"]), default=None),
            }

            # 3. broadcast
            spy = Spy(server.worker_pid(), 4, spy_name("broadcast")) if profiled else None
            mark = meter.mark()
            t_call = mark["t"]
            # To everyone: one announcement (notify.announce), stored and published once;
            # each client's receipt of it is counted under a key of its own (loadgen.receipt_key).
            announcement = notify.announce("broadcast")
            t_return = time.monotonic()
            broadcast_ids = [receipt_key(announcement.public_id, index) for index in range(len(user_ids))]
            for index, key in enumerate(broadcast_ids):
                sent_all[key] = t_return
                recipient_of[key] = user_ids[index]
            wait_received(loadgen, len(sent_all), args.interval + 10 if not long else 10)
            result["broadcast"] = {
                "recipients": len(broadcast_ids),
                "send_seconds": t_return - t_call,
                **meter.since(mark),
            }
            if spy is not None:
                result["profile_broadcast"] = spy.hot_spots()

            got = collect(loadgen, sent_all, recipient_of, user_ids, args, result)
            if metrics_on:
                result["metrics"] = scrape_metrics(server)
        finally:
            watcher.halt.set()
            final = loadgen.stop() if loadgen is not None else None
            result["exit_code"] = server.stop()
    lost = figures(
        result,
        final,
        server,
        watcher,
        steady_sent=steady["sent"],
        broadcast_ids=broadcast_ids,
        t_call=t_call,
        sent_all=sent_all,
        recipient_of=recipient_of,
        got=got,
    )
    if lost:
        from notify.models import Notification

        rows = Notification.objects.filter(pk__in=lost[:20]).values_list("pk", "recipient_id", "seq")
        result["lost_detail"] = [
            {
                "id": pk,
                "user": uid,
                "seq": seq,
                "client_cursor": got.cursors.get(uid),
                "why": why_lost(got.cursors.get(uid), seq),
            }
            for pk, uid, seq in rows
        ]
    return result


def scrape_metrics(server: Server) -> dict[str, float]:
    """The uvicorn-metrics variant's /notify/metrics at the end of its run: a few totals."""
    from stack import METRICS_TOKEN

    request = urllib.request.Request(
        f"{server.url}/notify/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read().decode()
    wanted = (
        'notify_polls_answered_total{outcome="woken"}',
        'notify_polls_answered_total{outcome="snapshot"}',
        "notify_delivery_seconds_count",
        "notify_delivery_seconds_sum",
        "notify_db_seconds_count",
        "notify_db_seconds_sum",
        "notify_redis_connected",
    )
    found = {}
    for line in text.splitlines():
        name, _, number = line.rpartition(" ")
        if name in wanted:
            found[name] = float(number)
    return found


def metrics_cost(results: list[dict[str, Any]]) -> list[str]:
    """Lines comparing uvicorn-metrics with uvicorn at each N both ran, and bench/metrics_cost.py's
    microbenchmark of the same calls (µs of CPU per poll)."""
    lines = []
    by = {(r["variant"], r["n"]): r for r in results if "steady" in r and not r.get("profiled")}
    micro: dict[str, float] | None = None
    for (variant, n), with_metrics in sorted(by.items()):
        without = by.get((PRIMARY, n))
        if variant != METRICS or without is None:
            continue
        on = 1000 * with_metrics["steady"]["server_cpu_ms_per_request"]
        off = 1000 * without["steady"]["server_cpu_ms_per_request"]
        cpu_on, cpu_off = with_metrics["steady"]["server_cpu_pct"], without["steady"]["server_cpu_pct"]
        scraped = with_metrics.get("metrics", {})
        delivered = scraped.get("notify_delivery_seconds_count") or 0
        mean = 1000 * scraped.get("notify_delivery_seconds_sum", 0) / delivered if delivered else None
        lines.append(
            f"  N={n}: {off:.0f} µs without, {on:.0f} µs with metrics ({100 * (on - off) / off:+.1f} %); "
            f"server CPU {cpu_off:.0f} % vs {cpu_on:.0f} % of a core; "
            f"scraped: {delivered:.0f} deliveries measured" + (f", mean {mean:.1f} ms" if mean is not None else "")
        )
        if micro is None:
            reply = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "metrics_cost.py")], capture_output=True, text=True, check=True
            )
            micro = json.loads(reply.stdout)
        calls_on, calls_off = micro["us_per_poll_metrics_on"], micro["us_per_poll_metrics_off"]
        lines.append(
            f"  N={n}: the metrics calls alone (bench/metrics_cost.py): {calls_on} µs per poll on, {calls_off} µs "
            f"off: {100 * calls_on / off:.1f} % of a poll's {off:.0f} µs"
        )
    profiled = [r for r in results if r["variant"] == METRICS and r.get("profiled") and "steady" in r]
    if profiled:
        from django.db import connection

        share = profile_share(VAR / f"bench-profile-{connection.vendor}-{METRICS}-steady.txt")
        if share is not None:
            lines.append(
                f"  N={profiled[0]['n']}, py-spy of the steady phase: {share:.1f} % of the server's samples "
                "inside notify/metrics.py (prometheus_client's writes included)"
            )
    return lines


def profile_share(path: Path) -> float | None:
    """The % of a ``py-spy record --format raw`` file's samples with notify/metrics.py on the stack."""
    if not path.exists():
        return None
    total = inside = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        if "notify/metrics.py" in stack:
            inside += int(count)
    return 100 * inside / total if total else None


def run_nchan(n: int, ctx: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Nchan at N (bench/nchan.py): the same clients, phases and figures as ``run_one``, the sender
    publishing each notification to Nchan instead of calling ``notify.send()``."""
    from nchan import NchanServer, Publisher
    from nchan import warm_up as warm_up_nchan

    variant = VARIANTS[NCHAN]
    user_ids = ctx["user_ids"][:n]
    result: dict[str, Any] = {
        "variant": NCHAN,
        "label": variant.label,
        "n": n,
        "mode": variant.mode,
        "auth": variant.auth,
        "profiled": False,
    }
    credentials_file = VAR / f"bench-nchan-users-{n}.json"  # the clients' channels: their users' ids
    credentials_file.write_text(json.dumps(user_ids))
    # Who ends a held poll that nothing answered (bench/nchan.py: Nchan 1.3.6 loses messages on a
    # multiplexed poll after a timeout): nobody (the default), Nchan (408), or the client.
    result["nchan_timeout"] = args.nchan_timeout
    server_timeout = {"none": 0.0, "server": args.timeout, "client": args.timeout + 10}[args.nchan_timeout]
    server = NchanServer(n, server_timeout, VAR / "logs" / f"bench-nchan-{n}.log")
    result["command"] = "nginx -c var/nchan-<port>/nginx.conf -g 'daemon off;' (written by bench/nchan.py)"
    sent_all: dict[int, float] = {}  # notification id -> when the publish returned
    recipient_of: dict[int, int] = {}  # notification id -> user id
    started = time.monotonic()
    server.start()
    result["start_seconds"] = round(time.monotonic() - started, 2)
    result["nchan_version"] = server.status().get("nchan version")
    watcher = Watcher(server, None, "", held=server.held)
    loadgen = publisher = None
    try:
        warm_up_nchan(server)
        time.sleep(0.5)
        before = server.sample()
        result["before"] = before.as_dict()
        result["processes"] = len(before.pids)
        loadgen = LoadGen(
            server.url,
            credentials_file,
            "nchan",
            auth="none",
            timeout=args.timeout,
            interval=args.interval,
            ramp_rate=args.ramp_rate,
            ramp_concurrency=args.ramp_concurrency,
            catch_up_seconds=args.catch_up_seconds,
            max_seconds=args.max_run_seconds,
            log_path=VAR / "logs" / f"bench-loadgen-nchan-{n}.log",
            abandon_after=args.timeout if args.nchan_timeout == "client" else 0.0,
        )
        meter = Meter(server, loadgen, ctx["redis_pid"])
        watcher.start()

        # 1. ramp: every client holds a poll (Nchan has no snapshot to take first)
        mark = meter.mark()
        ramp_seconds = ramp(loadgen, server.held, n, mark["t"] + args.ramp_limit)
        time.sleep(1.0)
        held = server.held()
        after = server.sample()
        stats = loadgen.ask("stats")
        result["ramp"] = {
            "seconds": round(ramp_seconds, 2),
            "held": held,
            "client_in_flight": stats["in_flight"],
            "snapshots": stats["snapshots"],
            "errors": stats["errors"],
            **meter.since(mark),
        }
        result["after"] = after.as_dict()
        if held:
            result["kb_per_held_poll"] = (after.rss_kb - before.rss_kb) / held
            result["threads_per_held_poll"] = (after.threads - before.threads) / held
        log(
            f"  ramp: held {held} / {n} in {ramp_seconds:.1f} s, in flight {stats['in_flight']}, "
            f"RSS {before.rss_kb / 1024:.0f} -> {after.rss_kb / 1024:.0f} MB, errors {stats['errors']}"
        )

        # 2. steady publishes, each to a random user's channel
        publisher = Publisher(server.url)
        mark, r0 = meter.mark(), stats["requests"]
        steady = paced(user_ids, args.rate, args.duration, n, lambda uid, i: publisher.send(uid, "steady", {"i": i}))
        cpu = meter.since(mark)
        sent_all.update(steady["sent"])
        recipient_of.update(steady["recipients"])
        stats = wait_received(loadgen, len(sent_all), 5)
        result["steady"] = {
            "sent": len(steady["sent"]),
            "rate": steady["rate"],
            "sender_worst_lag_ms": 1000 * steady["worst_lag"],
            **cpu,
            "requests_per_s": (stats["requests"] - r0) / (time.monotonic() - mark["t"]),
            "held_min": min((s["held"] for s in watcher.samples if s["t"] >= mark["t"]), default=None),
        }

        # 3. broadcast: one publish on the broadcast channel, which every poll follows
        mark = meter.mark()
        t_call = mark["t"]
        broadcast_ids = publisher.broadcast(n, "broadcast")
        t_return = time.monotonic()
        for index, pk in enumerate(broadcast_ids):
            sent_all[pk] = t_return
            recipient_of[pk] = user_ids[index]
        wait_received(loadgen, len(sent_all), 10)
        result["broadcast"] = {"recipients": n, "send_seconds": t_return - t_call, **meter.since(mark)}
        got = collect(loadgen, sent_all, recipient_of, user_ids, args, result)
    finally:
        watcher.halt.set()
        final = loadgen.stop() if loadgen is not None else None
        if publisher is not None:
            publisher.close()
        result["exit_code"] = server.stop()
    # Nchan answers a publish once it has written the subscribers' answers: a client often reads the
    # message before the publisher is told. So latency is from the publish call, the moment the
    # message is handed over (notify's: from send() returning, its PUBLISH to Redis done).
    result["latency_from"] = "publish called"
    lost = figures(
        result,
        final,
        server,
        watcher,
        steady_sent=steady["called"],
        broadcast_ids=broadcast_ids,
        t_call=t_call,
        sent_all=sent_all,
        recipient_of=recipient_of,
        got=got,
    )
    result["lost_detail"] = [
        {"id": pk, "user": recipient_of[pk], "client_cursor": got.cursors.get(recipient_of[pk])} for pk in lost[:20]
    ]
    return result


class Collected(NamedTuple):
    """What the clients read, by notification id: during the run, and in the catch-up after it."""

    receipts: dict[int, float]  # read during the run: id -> when
    missing: list[int]  # sent, and not read during the run
    late: dict[int, float]  # of those, read by the catch-up (or as it began)
    caught_up: set[int]  # users whose client read everything past its cursor after the run
    cursors: dict[int, Any]  # user -> the cursor their client had at the end, for those that caught up


def collect(
    loadgen: LoadGen,
    sent_all: dict[int, float],
    recipient_of: dict[int, int],
    user_ids: list[int],
    args: argparse.Namespace,
    result: dict[str, Any],
) -> Collected:
    """The receipts; then what was not read during the run, asked for once more: late (a poll after
    the load stops reads it) or lost."""
    receipts = {int(k): v for k, v in loadgen.ask("receipts", timeout=60)["receipts"].items()}
    missing = [pk for pk in sent_all if pk not in receipts]
    late: dict[int, float] = {}
    caught_up: set[int] = set()
    cursors: dict[int, Any] = {}
    if missing:
        index_of = {uid: i for i, uid in enumerate(user_ids)}
        clients = sorted({index_of[recipient_of[pk]] for pk in missing})
        log(f"  {len(missing)} notifications not read during the run: {len(clients)} clients catch up")
        catch_up_started = time.monotonic()
        answer = loadgen.ask(f"catchup {json.dumps(clients)}", timeout=args.catch_up_seconds + 30)
        late = {int(k): v for k, v in answer["late"].items()}
        late.update(read_meanwhile(loadgen, missing, late))
        caught_up = {user_ids[i] for i in answer["caught_up"]}
        cursors = {user_ids[int(i)]: c for i, c in answer["cursors"].items()}
        result["catch_up"] = {
            "clients": len(clients),
            "caught_up": len(caught_up),
            "timed_out": answer["timed_out"],
            "seconds": round(time.monotonic() - catch_up_started, 1),
        }
    return Collected(receipts, missing, late, caught_up, cursors)


def figures(
    result: dict[str, Any],
    final: dict[str, Any] | None,
    server: Any,
    watcher: Watcher,
    *,
    steady_sent: dict[int, float],
    broadcast_ids: list[int],
    t_call: float,
    sent_all: dict[int, float],
    recipient_of: dict[int, int],
    got: Collected,
) -> list[int]:
    """The run's figures into ``result``: the client's, latency, broadcast, loss, the server's log
    and peaks. The ids lost."""
    receipts, missing, late, caught_up = got.receipts, got.missing, got.late, got.caught_up
    if final is not None:
        result["client"] = {
            "errors": final["errors"],
            "error_samples": final["error_samples"],
            "duplicates": final["duplicates"],
            "duplicate_ids": final["duplicate_ids"],
            "requests": final["requests"],
            "cpu_seconds": final["cpu"],
            "abandoned": final.get("abandoned", 0),
            "max_rss_kb": final["max_rss_kb"],
        }
    latencies = [1000 * (receipts[pk] - t) for pk, t in steady_sent.items() if pk in receipts]
    # Each steady notification: when send() returned (s after the first) and its latency, for a closer look.
    first = min(steady_sent.values(), default=0.0)
    (VAR / f"bench-latencies-{result['variant']}-{result['n']}.json").write_text(
        json.dumps(
            [
                [round(t - first, 4), None if pk not in receipts else round(1000 * (receipts[pk] - t), 2)]
                for pk, t in steady_sent.items()
            ]
        )
    )
    result["latency_ms"] = {
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies, default=None),
        "min": min(latencies, default=None),
        "count": len(latencies),
    }
    arrivals = sorted(receipts[pk] - t_call for pk in broadcast_ids if pk in receipts)
    bn = len(broadcast_ids)

    def reached(fraction: float) -> float | None:
        need = math.ceil(fraction * bn)
        return arrivals[need - 1] if bn and len(arrivals) >= need else None

    result["broadcast"].update(
        {"received": len(arrivals), "p50_s": reached(0.5), "p99_s": reached(0.99), "p100_s": reached(1.0)}
    )
    result["sent_total"] = len(sent_all)
    result["late"] = len([pk for pk in missing if pk in late])
    # Lost: its user's client read everything past its cursor after the run, and it was not there.
    lost = [pk for pk in missing if pk not in late and recipient_of[pk] in caught_up]
    result["lost"] = len(lost)
    # Unverified: the catch-up ran out of time (or of tries) before that client was done.
    result["unverified"] = len([pk for pk in missing if pk not in late and recipient_of[pk] not in caught_up])
    result["unexpected"] = len([pk for pk in {**receipts, **late} if pk not in sent_all])
    problems = server.log_problems()
    result["server_log_errors"] = sum(problems.values())
    result["server_log_sample"] = sorted(problems.items(), key=lambda item: -item[1])[:5]
    result["peak"] = {
        "rss_kb": max((s["rss_kb"] for s in watcher.samples), default=None),
        "threads": max((s["threads"] for s in watcher.samples), default=None),
        "fds": max((s["fds"] for s in watcher.samples), default=None),
    }
    return lost


def read_meanwhile(loadgen: LoadGen, missing: list[int], late: dict[int, float]) -> dict[int, float]:
    """What the clients read between the receipts being taken and the catch-up stopping them.

    The clients keep polling until the catch-up cancels them: one may read a missing
    notification in that moment and move its cursor past it, so the catch-up does
    not see it again. It was read (late), not lost; the receipts, asked again now
    that every client is stopped, say so.
    """
    final = loadgen.ask("receipts", timeout=60)["receipts"]
    return {pk: final[str(pk)] for pk in missing if pk not in late and str(pk) in final}


def why_lost(cursor: str | None, seq: int) -> str:
    """The cursor is opaque to clients; here we know it is the stream position, and that tells why."""
    try:
        past = cursor is not None and int(cursor) >= seq
    except ValueError:
        return f"client cursor {cursor!r}"
    return "the client's cursor moved past it" if past else "not returned past the client's cursor"


def client_errors(result: dict[str, Any]) -> int:
    return sum(result.get("client", {}).get("errors", {}).values())


def failed(result: dict[str, Any]) -> list[str]:
    """What makes a run count as failed for --quick: never a speed."""
    problems = []
    if "skipped" in result or "error" in result:
        return [result.get("skipped") or result.get("error")]
    if result["lost"]:
        problems.append(f"{result['lost']} of {result['sent_total']} notifications lost: {result['lost_detail'][:3]}")
    if result["unverified"]:
        problems.append(f"{result['unverified']} notifications neither read nor verified lost")
    if result["unexpected"]:
        problems.append(f"{result['unexpected']} unexpected notifications received")
    if result["client"]["duplicates"]:
        problems.append(f"{result['client']['duplicates']} duplicates")
    if client_errors(result):
        problems.append(f"client errors {result['client']['errors']}")
    if result["server_log_errors"]:
        problems.append(f"{result['server_log_errors']} error lines in the server log")
    if result["mode"] != "short" and (result["ramp"]["held"] or 0) < result["n"]:
        problems.append(f"only {result['ramp']['held']} of {result['n']} polls held")
    return problems


# --- the plan ----------------------------------------------------------------------------------


def run_estimate(variant_name: str, n: int, args: argparse.Namespace) -> float:
    """Seconds one run may take: start and stop, the ramp (~100 clients/s when the server is slow),
    the phases, and the catch-up of a run the server could not keep up with."""
    drain = args.interval + 10 if VARIANTS[variant_name].mode == "short" else 10
    return 20 + min(args.ramp_limit, n / 100) + args.duration + drain + min(args.catch_up_seconds, n / 200)


def skip_reason(variant_name: str, n: int, elapsed: float, args: argparse.Namespace, redis_client: Any) -> str | None:
    if elapsed + run_estimate(variant_name, n, args) > args.budget:
        return f"not run: it would pass the time budget of {args.budget:.0f} s"
    if VARIANTS[variant_name].kind == "wsgi":
        clients = redis_client.info("clients")
        room = int(clients["maxclients"]) - int(clients["connected_clients"]) - 1000
        if n > room:
            return (
                f"not run: under WSGI every held poll opens a Redis connection of its own; {n:,} would exhaust "
                f"the shared Redis (maxclients {clients['maxclients']}, {clients['connected_clients']} connected)"
            )
    return None


def skipped(variant_name: str, n: int, reason: str) -> dict[str, Any]:
    log(f"{variant_name} N={n}: {reason}")
    return {"variant": variant_name, "n": n, "label": VARIANTS[variant_name].label, "skipped": reason}


def attempt(
    variant_name: str, n: int, ctx: dict[str, Any], args: argparse.Namespace, profiled: bool = False
) -> dict[str, Any]:
    """run_one, logged; a failure becomes a result that says what failed."""
    if not profiled:
        log(f"{variant_name} N={n}")
    try:
        result = run_nchan(n, ctx, args) if variant_name == NCHAN else run_one(variant_name, n, ctx, args, profiled)
    except Exception as error:  # noqa: BLE001 - reported, and the next run goes on
        log(f"  failed: {error!r}")
        return {
            "variant": variant_name,
            "n": n,
            "label": VARIANTS[variant_name].label,
            "profiled": profiled,
            "error": f"{type(error).__name__}: {error}"[:600],
        }
    lat, b = result["latency_ms"], result["broadcast"]

    def ms(value: float | None, scale: float = 1.0) -> str:
        return "-" if value is None else f"{value * scale:.0f}"

    log(
        f"  latency p50 {ms(lat['p50'])} p99 {ms(lat['p99'])} max {ms(lat['max'])} ms; broadcast 99% "
        f"{ms(b['p99_s'], 1000)} ms 100% {ms(b['p100_s'], 1000)} ms; of {result['sent_total']} sent "
        f"{result['late']} late, {result['lost']} lost, {result['unverified']} unverified, "
        f"dups {result['client']['duplicates']}, client errors {result['client']['errors']}, server log problems "
        f"{result['server_log_errors']}"
    )
    return result


# --- main ---


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="numbers of users, comma-separated")
    parser.add_argument(
        "--other-sizes",
        default="1000,5000",
        help=f"the sizes (among --sizes) at which variants other than {PRIMARY} and {SESSION} run",
    )
    parser.add_argument(
        "--variants",
        help=f"comma-separated, of: {', '.join(VARIANTS)} (default: all; with --quick, {PRIMARY},{SESSION})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"smoke test: N=200, {PRIMARY} and {SESSION} (or --variants), a few seconds each; "
            "exit 1 on any loss, duplicate or error"
        ),
    )
    parser.add_argument("--rate", type=float, default=200.0, help="notifications a second in the steady phase")
    # 30 s: long enough to take in the first wave of re-polls (every poll of the ramp
    # times out 25 s after it began), which a shorter window can miss.
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of steady sends")
    parser.add_argument("--timeout", type=float, default=25.0, help="long poll timeout the clients ask for")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between short polls")
    parser.add_argument("--ramp-rate", type=float, default=2000.0, help="clients started a second")
    parser.add_argument(
        "--ramp-concurrency", type=int, default=100, help="clients taking their first cursor at once during the ramp"
    )
    parser.add_argument(
        "--ramp-limit", type=float, default=45.0, help="seconds the ramp may take; held polls are counted then"
    )
    parser.add_argument(
        "--catch-up-seconds",
        type=float,
        default=30.0,
        help="after a run, time allowed to read what was not read during it",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=2400.0,
        help="seconds for the whole run; runs that would not fit are skipped and reported so",
    )
    parser.add_argument("--max-run-seconds", type=float, default=240.0, help="a load generator stops by itself after")
    parser.add_argument(
        "--nchan-timeout",
        choices=("none", "server", "client"),
        default="none",
        help=(
            "nchan: who ends a held poll nothing answered after --timeout: none (held until a message comes, "
            "the default), server (Nchan answers 408) or client (abandons it and asks again). Nchan 1.3.6 loses "
            "messages on a multiplexed poll after either timeout (bench/nchan.py)"
        ),
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip py-spy")
    parser.add_argument(
        "--no-write",
        dest="write",
        action="store_false",
        help="do not write docs/benchmarks.md and docs/img/benchmarks.png",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.duration, args.profile, args.write = "200", 3.0, False, False
        args.variants = args.variants or f"{PRIMARY},{SESSION}"
    args.sizes = sorted(int(s) for s in str(args.sizes).split(",") if s)
    args.other_sizes = sorted(int(s) for s in str(args.other_sizes).split(",") if s)
    args.variants = [v for v in (args.variants or ",".join(VARIANTS)).split(",") if v]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.quick:
        args.budget = min(args.budget, 60 * len(args.variants))
    return args


def code_version() -> str:
    """The commit measured, and whether notify/ or project/ differed from it (others work in this tree)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    diff = git("diff", "HEAD", "--", "notify", "project")
    if not diff:
        return commit
    files = len(git("diff", "HEAD", "--name-only", "--", "notify", "project").splitlines())
    return f"{commit} + uncommitted changes to {files} file(s) (diff {hashlib.sha256(diff.encode()).hexdigest()[:8]})"


def setup_environment() -> str:
    url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    if url.startswith("postgres"):
        name = database_name(url)
        if name == "test" or name.startswith("test_"):
            sys.exit(
                f"bench: refusing DATABASE_URL naming database {name!r}: that is the test suite's. "
                "Use e.g. postgres://postgres@127.0.0.1:5432/notify_bench"
            )
        ensure_postgres_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    os.environ["DJANGO_DEBUG"] = "0"  # as in production: no query log kept in memory
    VAR.mkdir(exist_ok=True)
    (VAR / "logs").mkdir(exist_ok=True)
    return url


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    raise_fd_limit()
    setup_environment()
    os.environ["NOTIFY_CHANNEL_PREFIX"] = prefix = f"notify-bench-{uuid.uuid4().hex[:6]}"

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    user_ids = prepare_users(max(args.sizes))
    tokens_path = VAR / "bench-tokens.json"
    issue_tokens(user_ids, tokens_path)
    needs_sessions = any(VARIANTS[v].auth == "session" for v in args.variants)
    sessions = issue_sessions(user_ids) if needs_sessions else []
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    info = client.info()
    ctx = {
        "user_ids": user_ids,
        "tokens": json.loads(tokens_path.read_text()),
        "sessions": sessions,
        "prefix": prefix,
        "redis": client,
        "redis_url": settings.REDIS_URL,
        # Redis's own CPU is read from /proc when it runs on this machine (it does, on loopback).
        "redis_pid": int(info["process_id"]) if Path(f"/proc/{info['process_id']}").exists() else None,
        "notify_settings": dict(settings.NOTIFY),
    }
    maxclients = client.config_get("maxclients")["maxclients"]
    meta = {
        "vendor": connection.vendor,
        "code": code_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([".venv/bin/python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "database": f"{connection.vendor} ({Path(str(connection.settings_dict['NAME'])).name})",
        "redis": f"{info['redis_version']} at {settings.REDIS_URL}, maxclients {maxclients}",
        "args": {k: v for k, v in vars(args).items()},
    }
    log(f"bench: {meta['database']}, Redis {meta['redis']}, sizes {args.sizes}, variants {args.variants}")
    results: list[dict[str, Any]] = []
    stopped: dict[str, str] = {}  # variant -> why its larger sizes are not run
    if NCHAN in args.variants:
        from nchan import ensure_installed

        cannot = ensure_installed(log)  # Debian's nginx + libnginx-mod-nchan, installed if missing and root
        if cannot is not None:
            log(f"{NCHAN}: NOT RUN: {cannot}")
            stopped[NCHAN] = f"not run: {cannot}"
    # In order of what matters most, so that if the budget runs out it is the tail that is left
    # out (and said so): the default variant at every N, each N with bearer tokens, then with
    # session cookies, then Nchan (side by side, minutes apart on the same machine), the others
    # at the smallest N, the profiles, then the others at larger N. N None: a profiled run.
    every_size = [v for v in (PRIMARY, SESSION, NCHAN) if v in args.variants]
    others = [v for v in args.variants if v not in every_size]
    other_sizes = [n for n in args.other_sizes if n in args.sizes] or args.sizes[:1]
    plan: list[tuple[str, int | None]] = [(v, n) for n in args.sizes for v in every_size]
    plan += [(v, other_sizes[0]) for v in others]
    # py-spy profiles Python: not Nchan, which is C.
    plan += [(v, None) for v in every_size if v != NCHAN] if args.profile else []
    # With metrics: where their cost shows in a profile (metrics_cost).
    plan += [(METRICS, None)] if args.profile and METRICS in args.variants else []
    # At larger N, the other ASGI servers first: the thread-per-poll variants and short polling
    # have shown their costs at the smallest N already.
    tail = sorted(
        others, key=lambda v: VARIANTS[v].mode != "long" or VARIANTS[v].kind == "wsgi" or v == "uvicorn-django"
    )
    plan += [(v, n) for n in other_sizes[1:] for v in tail]
    # The default's twin with CPython's stock garbage collector: at every N, where its
    # pauses show (the largest), last so that it never crowds out the rest.
    plan += [(TWIN, n) for n in args.sizes if n not in other_sizes and TWIN in args.variants]
    for variant_name, size in plan:
        if size is None:
            # py-spy in every phase, in a run of its own: at the largest N the variant held.
            held = [
                r["n"]
                for r in results
                if r["variant"] == variant_name and "ramp" in r and (r["ramp"]["held"] or 0) >= 0.99 * r["n"]
            ]
            n = max(held, default=min(args.sizes))
            reason = skip_reason(variant_name, n, time.monotonic() - started, args, client)
            if reason is None:
                log(f"{variant_name} N={n}, profiled with py-spy (not in the tables)")
                results.append(attempt(variant_name, n, ctx, args, profiled=True))
            else:
                log(f"profile of {variant_name} {reason}")
            continue
        n = size
        reason = stopped.get(variant_name) or skip_reason(variant_name, n, time.monotonic() - started, args, client)
        if reason is not None:
            results.append(skipped(variant_name, n, reason))
            continue
        result = attempt(variant_name, n, ctx, args)
        results.append(result)
        if "error" in result:
            stopped[variant_name] = f"not run: N={n} failed"
        elif variant_name not in every_size and result["mode"] == "long" and (result["ramp"]["held"] or 0) < 0.9 * n:
            stopped[variant_name] = f"not run: only {result['ramp']['held']} of {n} polls were held at N={n}"
    results.sort(key=lambda r: (r.get("profiled", False), args.sizes.index(r["n"]), args.variants.index(r["variant"])))
    meta["seconds"] = round(time.monotonic() - started)
    # Only a run that writes the docs replaces the saved results the docs are made from.
    name = (
        "bench-quick.json"
        if args.quick
        else (f"bench-results-{connection.vendor}.json" if args.write else "bench-last.json")
    )
    out = VAR / name
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    log(f"results in {out.relative_to(ROOT)} ({meta['seconds']} s)")
    cost = metrics_cost(results)
    if cost:
        log("metrics' cost (steady phase; server CPU per poll answered):\n" + "\n".join(cost))
    from report import nchan_section

    beside_nchan = nchan_section(results)
    if beside_nchan:
        log("notify beside Nchan (ratios notify / Nchan; CPU in % of one core):\n" + "\n".join(beside_nchan[2:]))
    if args.write:
        from report import saved_runs, write_report

        write_report(saved_runs(), ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "img" / "benchmarks.png")
        log("wrote docs/benchmarks.md and docs/img/benchmarks.png (from var/bench-results-*.json)")
    problems = [f"{r['variant']} N={r['n']}: {p}" for r in results if not r.get("profiled") for p in failed(r)]
    if args.quick:
        for problem in problems:
            log(f"FAIL {problem}")
        log("quick: OK" if not problems else "quick: FAILED")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
