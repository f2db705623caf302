"""The load generator of bench/run.py: N simulated clients in one process.

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:PORT --credentials FILE
        [--auth token|session] [--mode long|short]
    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:PORT --credentials USER_IDS --mode nchan

Run by bench/run.py, never by hand: it reads one command a line on stdin and
answers each with one JSON line on stdout (see ``COMMANDS``). One aiohttp
ClientSession with ``TCPConnector(limit=0)`` carries every client; each client
sends its own credential with every request, as an API client or a browser does:

- ``token``: ``Authorization: Bearer <token>``;
- ``session``: ``Cookie: sessionid=<key>``, the Django session cookie of a
  logged-in user (what the JavaScript client's requests carry).

Each client first asks for its unread snapshot (which gives it a cursor), then

- ``long``: polls ``?after=<cursor>&timeout=<timeout>`` and asks again at once
  with the cursor it got back, or
- ``short``: asks ``?after=<cursor>&timeout=0`` every ``--interval`` seconds (the
  classic "poll every 5 s"), at a phase of its own.

``nchan`` (bench/nchan.py): the credentials are user ids, and client ``i`` long-polls
Nchan's ``/sub/user/<id>`` (its own channel and the broadcast channel) from the
start, with no snapshot: Nchan's cursor is the answer's ``Last-Modified`` and
``Etag``, sent back as ``If-Modified-Since`` and ``If-None-Match`` as Nchan's own
client does; a ``408`` (nothing new within the server's timeout) keeps the cursor.
With ``--abandon-after S`` a client abandons a poll still unanswered after S seconds
(closes its connection) and asks again at once from the same cursor, on a new one:
bench/nchan.py says why.
Each answer is one notification's JSON; a broadcast (``data.broadcast``) is one
message that client ``i`` counts as notification ``id + i``.

Every notification received is recorded by id with the time it was read
(``time.monotonic()``: CLOCK_MONOTONIC, the same clock as the orchestrator's), so
the orchestrator can compute latency, loss and duplicates. The process exits by
itself after ``--max-seconds`` whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from collections import Counter

import aiohttp
from stack import AUTH_MODES, auth_headers  # bench/, this script's directory

# Waiting this long after a failed request before the client tries again.
ERROR_BACKOFF = 1.0


# notify.models.ANNOUNCEMENT_IDS_FROM: an announcement (notify.announce) has one id for every
# user, so its receipt by client ``index`` is counted under a key of its own.
ANNOUNCEMENT_IDS_FROM = 2**50


def receipt_key(nid: int, index: int) -> int:
    """What a receipt is counted under: a notification's id, or an announcement's (negative) key
    for this client: ``-(announcement * 1_000_000 + index)``."""
    if nid < ANNOUNCEMENT_IDS_FROM:
        return nid
    return -((nid - ANNOUNCEMENT_IDS_FROM) * 1_000_000 + index)


class Load:
    def __init__(self, args: argparse.Namespace, credentials: list[str]) -> None:
        self.args = args
        self.headers = [auth_headers(args.auth, credential) for credential in credentials]  # by client index
        # Nchan: each client's subscriber path, by client index (the credentials are user ids).
        self.nchan_paths = [f"/user/{credential}" for credential in credentials] if args.mode == "nchan" else []
        self.received: dict[int, float] = {}  # notification id -> first time read
        self.late: dict[int, float] = {}  # read only by the catch-up after the load stopped
        self.cursors: dict[int, str | list[str]] = {}  # client index -> its latest cursor (Nchan: 2 headers)
        self.duplicates = 0
        self.duplicate_ids: list[int] = []
        self.errors: Counter[str] = Counter()
        self.error_samples: dict[str, str] = {}  # the first answer or exception of each kind
        self.requests = 0  # answered (any status)
        self.in_flight = 0  # poll requests sent and not answered
        self.snapshots = 0  # clients that have their first cursor
        self.started = 0  # clients started
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []
        self.client_tasks: dict[int, asyncio.Task[None]] = {}  # client index -> its running task
        self.churned = 0  # polls abandoned mid-flight and replaced by a new one (see churn)
        self.abandoned = 0  # Nchan polls given up after --abandon-after, asked again at once
        self.session: aiohttp.ClientSession | None = None
        self.first_polls = asyncio.Semaphore(args.ramp_concurrency)
        # Nchan's held polls: given up after --abandon-after seconds, or (0) never: the server's timeout rules.
        self.abandon_timeout = aiohttp.ClientTimeout(total=args.abandon_after or None, connect=20)

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,
            # Short polling: keep the connection between polls (the server must keep it
            # longer than --interval too; bench/run.py starts it so).
            keepalive_timeout=max(30.0, self.args.interval * 3),
            ttl_dns_cache=None,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.args.timeout + 30, connect=20),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            # One session carries every client: a cookie one client is sent must never be
            # sent by the others. Each sends its own credential in its headers, nothing else.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self.ramp()))

    async def ramp(self) -> None:
        """Start the clients at --ramp-rate a second, so connects never flood the backlog."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for index in range(len(self.headers)):
            due = t0 + index / self.args.ramp_rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stopping:
                return
            task = loop.create_task(self.client(index))
            self.tasks.append(task)
            self.client_tasks[index] = task
            self.started += 1

    async def churn(self, rate: float, seconds: float, seed: int = 0) -> None:
        """Abandon ``rate`` held polls a second, for ``seconds``, each replaced at once by a new one.

        A churned client closes its connection mid-poll (as a closed tab or a lost
        phone does) and comes back on a new connection with the cursor it had: the
        server must free the abandoned poll and lose nothing across the change.
        """
        loop = asyncio.get_running_loop()
        rng = random.Random(seed)
        t0 = loop.time()
        for i in range(int(rate * seconds)):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stopping:
                return
            ready = [index for index in self.cursors if index in self.client_tasks]
            if not ready:
                continue
            index = rng.choice(ready)
            old = self.client_tasks[index]
            old.cancel()
            task = loop.create_task(self.client(index, resume=True))
            self.tasks.append(task)
            self.client_tasks[index] = task
            self.churned += 1
        self.tasks = [task for task in self.tasks if not task.done()]

    def record(self, index: int, notifications: list[dict], into: dict[int, float] | None = None) -> None:
        now = time.monotonic()
        into = self.received if into is None else into
        for notification in notifications:
            nid = receipt_key(notification["id"], index)
            if nid in self.received or nid in self.late:
                self.duplicates += 1
                if len(self.duplicate_ids) < 20:
                    self.duplicate_ids.append(nid)
            else:
                into[nid] = now

    async def get(self, index: int, params: dict[str, str]) -> dict | None:
        """One poll by client ``index``; its JSON, or None after counting an error."""
        assert self.session is not None
        self.in_flight += 1
        try:
            async with self.session.get(
                f"{self.args.url}/notify/poll",
                params=params,
                headers=self.headers[index],
            ) as response:
                body = await response.read()
                status = response.status
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is counted, by kind
            if not self.stopping:
                self.count_error(type(error).__name__, repr(error))
            return None
        finally:
            self.in_flight -= 1
        self.requests += 1
        if status != 200:
            if not self.stopping:
                self.count_error(f"HTTP {status}", body[:300].decode(errors="replace"))
            return None
        return json.loads(body)

    def count_error(self, kind: str, sample: str) -> None:
        self.errors[kind] += 1
        self.error_samples.setdefault(kind, sample)

    async def client(self, index: int, *, resume: bool = False) -> None:
        if self.args.mode == "nchan":
            await self.nchan_client(index)
            return
        cursor = self.cursors[index] if resume else None
        # At most --ramp-concurrency clients take their first cursor at once: the ramp goes
        # as fast as the server answers, without burying it under a queue of new clients.
        if cursor is None:
            async with self.first_polls:
                while cursor is None and not self.stopping:
                    page = await self.get(index, {})
                    if page is None:
                        await asyncio.sleep(ERROR_BACKOFF)
                        continue
                    self.record(index, page["notifications"])
                    cursor = page["cursor"]
            self.cursors[index] = cursor
            self.snapshots += 1
        loop = asyncio.get_running_loop()
        if self.args.mode == "long":
            params = {"timeout": str(self.args.timeout)}
            while not self.stopping:
                page = await self.get(index, {**params, "after": cursor})
                if page is None:
                    await asyncio.sleep(ERROR_BACKOFF)
                    continue
                self.record(index, page["notifications"])
                cursor = self.cursors[index] = page["cursor"]
        else:
            interval = self.args.interval
            next_at = loop.time() + random.Random(index).uniform(0, interval)
            while not self.stopping:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at += interval
                page = await self.get(index, {"after": cursor, "timeout": "0"})
                if page is not None:
                    self.record(index, page["notifications"])
                    cursor = self.cursors[index] = page["cursor"]

    async def nchan_get(
        self, index: int, cursor: list[str] | None, where: str = "/sub"
    ) -> tuple[int, bytes, list[str]]:
        """One Nchan long poll by client ``index`` from ``cursor``: (status, body, the new cursor);
        status 0 after counting an error."""
        assert self.session is not None
        headers = {} if cursor is None else {"If-Modified-Since": cursor[0], "If-None-Match": cursor[1]}
        abandon = where == "/sub"  # held polls: abandoned after --abandon-after, or never
        self.in_flight += 1
        try:
            url = f"{self.args.url}{where}{self.nchan_paths[index]}"
            timeout = self.abandon_timeout if abandon else self.session.timeout
            async with self.session.get(url, headers=headers, timeout=timeout) as response:
                body = await response.read()
                status = response.status
                new = [response.headers.get("Last-Modified", ""), response.headers.get("Etag", "")]
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            if abandon and self.args.abandon_after:  # nothing new within --abandon-after: asked again at once
                self.abandoned += 1
                return 408, b"", []
            if not self.stopping:
                self.count_error("TimeoutError", "no answer within the client's timeout")
            return 0, b"", []
        except Exception as error:  # noqa: BLE001 - every failure is counted, by kind
            if not self.stopping:
                self.count_error(type(error).__name__, repr(error))
            return 0, b"", []
        finally:
            self.in_flight -= 1
        self.requests += 1
        if status not in (200, 408) and not self.stopping:
            self.count_error(f"HTTP {status}", body[:300].decode(errors="replace"))
        return status, body, new

    def nchan_record(self, index: int, body: bytes, into: dict[int, float] | None = None) -> None:
        notification = json.loads(body)
        if notification["data"].get("broadcast"):
            notification["id"] += index  # this client's copy of the one broadcast message
        self.record(index, [notification], into)

    async def nchan_client(self, index: int) -> None:
        """Client ``index`` long-polling Nchan from the start, following its cursor."""
        self.snapshots += 1  # nothing to take first: the first poll is held at once
        cursor = self.cursors.get(index)
        while not self.stopping:
            status, body, new = await self.nchan_get(index, cursor)  # type: ignore[arg-type]
            if status == 200:
                self.nchan_record(index, body)
                cursor = self.cursors[index] = new
            elif status != 408:  # 408: nothing new within the server's timeout; ask again at once
                await asyncio.sleep(ERROR_BACKOFF)

    def stats(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "t": time.monotonic(),
            "auth": self.args.auth,
            "started": self.started,
            "snapshots": self.snapshots,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "churned": self.churned,
            "abandoned": self.abandoned,
            "errors": dict(self.errors),
            "error_samples": self.error_samples,
            "received": len(self.received),
            "duplicates": self.duplicates,
            "duplicate_ids": self.duplicate_ids,
            "cpu": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": usage.ru_maxrss,
        }

    async def catch_up(self, indexes: list[int]) -> dict:
        """Stop the load, then let the given clients read what they have not yet read.

        What they read now was not lost, only late: the run ended before it came (the
        server was overloaded, or a poll failed). Anything still missing after this is lost.
        """
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        self.stopping = False  # count the catch-up's own errors
        gate = asyncio.Semaphore(50)
        caught_up: list[int] = []

        async def nchan_read_all(index: int) -> None:
            cursor = self.cursors.get(index)
            async with gate:
                for _ in range(200):  # failures, and one message an answer
                    status, body, new = await self.nchan_get(index, cursor, "/catchup")  # type: ignore[arg-type]
                    if status == 200:
                        self.nchan_record(index, body, into=self.late)
                        cursor = self.cursors[index] = new
                    elif status == 408:  # nothing past the cursor within 1 s
                        caught_up.append(index)
                        return
                    else:
                        await asyncio.sleep(ERROR_BACKOFF)

        async def read_all(index: int) -> None:
            cursor = self.cursors.get(index)
            async with gate:
                for _ in range(20):  # failures and pages of 50: far more than a run sends one user
                    params = {} if cursor is None else {"after": cursor, "timeout": "0", "limit": "50"}
                    page = await self.get(index, params)
                    if page is None:
                        await asyncio.sleep(ERROR_BACKOFF)
                        continue
                    self.record(index, page["notifications"], into=self.late)
                    if cursor is not None and page["notifications"]:
                        cursor = self.cursors[index] = page["cursor"]
                        continue
                    # An empty page past the cursor, or (never had a cursor) the unread snapshot.
                    caught_up.append(index)
                    return

        timed_out = False
        try:
            async with asyncio.timeout(self.args.catch_up_seconds):
                reader = nchan_read_all if self.args.mode == "nchan" else read_all
                await asyncio.gather(*(reader(i) for i in indexes))
        except TimeoutError:
            timed_out = True
        return {
            "late": self.late,
            "timed_out": timed_out,
            "caught_up": caught_up,
            "cursors": {i: self.cursors.get(i) for i in indexes},
            **self.stats(),
        }

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()


COMMANDS = ("start", "churn <rate> <seconds>", "stats", "receipts", "catchup [client indexes]", "stop")


async def serve(load: Load, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(payload: dict) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    await load.open()
    answer({"ready": True, "pid": os.getpid()})
    try:
        async with asyncio.timeout(max_seconds):
            while True:
                line = await reader.readline()
                if not line:  # the orchestrator went away
                    return
                command = line.decode().strip()
                if command == "start":
                    load.start()
                    answer({"ok": True})
                elif command.startswith("churn "):
                    rate, seconds = (float(x) for x in command.split()[1:3])
                    load.tasks.append(loop.create_task(load.churn(rate, seconds)))
                    answer({"ok": True})
                elif command == "stats":
                    answer(load.stats())
                elif command == "receipts":
                    answer({"receipts": load.received})
                elif command.startswith("catchup "):
                    answer(await load.catch_up(json.loads(command.removeprefix("catchup "))))
                elif command == "stop":
                    await load.stop()
                    answer(load.stats())
                    return
                else:
                    answer({"error": f"unknown command {command!r}, expected one of {COMMANDS}"})
    except TimeoutError:
        print(f"loadgen: stopping after --max-seconds {max_seconds}", file=sys.stderr)
    finally:
        await load.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument(
        "--credentials",
        required=True,
        help="a JSON file: one credential per client, bearer tokens or session cookies ('sessionid=<key>')",
    )
    parser.add_argument("--auth", choices=AUTH_MODES, default="token", help="how the clients authenticate")
    parser.add_argument("--mode", choices=("long", "short", "nchan"), default="long")
    parser.add_argument("--timeout", type=float, default=25.0, help="long poll timeout asked of the server")
    parser.add_argument("--interval", type=float, default=5.0, help="short polling: seconds between polls")
    parser.add_argument("--ramp-rate", type=float, default=2000.0, help="clients started per second")
    parser.add_argument("--ramp-concurrency", type=int, default=100, help="clients taking their first cursor at once")
    parser.add_argument("--catch-up-seconds", type=float, default=60.0, help="the catch-up's time limit")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    parser.add_argument(
        "--abandon-after",
        type=float,
        default=0.0,
        help="nchan: abandon a poll unanswered after this many seconds and ask again (0: wait as long as the server)",
    )
    args = parser.parse_args()
    if "127.0.0.1" not in args.url and "localhost" not in args.url:
        parser.error("loopback only: --url must be http://127.0.0.1:<port>")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open(args.credentials) as file:
        credentials = json.load(file)
    load = Load(args, credentials)
    if args.uvloop:
        import uvloop

        uvloop.run(serve(load, args.max_seconds))
    else:
        asyncio.run(serve(load, args.max_seconds))


if __name__ == "__main__":
    main()
