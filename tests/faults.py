"""Real processes to break: a redis-server of the test's own, and clients that follow cursors."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import redis

from tests.server import ROOT, free_port

T = TypeVar("T")


@dataclass
class OwnRedis:
    """A redis-server on its own port, which a test may stop and start again."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        # The server writes to its own copy of the file descriptor: ours can close at once.
        logs = ROOT / "var" / "logs"
        logs.mkdir(parents=True, exist_ok=True)  # a fresh checkout may not have started a server yet
        with open(logs / f"redis-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()  # a stopped process dies of SIGKILL too; but never leave one frozen
            self.process.kill()
            self.process.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the server hangs, with its sockets open. Connections are still accepted by the
        kernel (the listen backlog) and writes are buffered: nothing is refused, nothing answered."""
        assert self.process is not None and self.process.poll() is None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: the server goes on with whatever its sockets buffered meanwhile."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


class Followers:
    """Clients that each follow one user's cursor, as the JS and Python clients do,
    in an event loop of their own; they record every notification id and status,
    when each notification arrived, and how long each poll took."""

    def __init__(self, base_url: str, tokens: list[str], cursors: list[str], timeout: float = 5) -> None:
        self.base_url = base_url
        self.tokens, self.cursors, self.timeout = tokens, list(cursors), timeout
        self.received: list[list[int]] = [[] for _ in tokens]
        # (notification id, time.monotonic() when its answer arrived), per follower.
        self.arrivals: list[list[tuple[int, float]]] = [[] for _ in tokens]
        self.statuses: list[int] = []
        # (time.monotonic() when sent, seconds until answered, status) of every poll answered.
        self.polls: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> Followers:
        self._thread.start()
        self._running.wait(10)
        return self

    def stop(self) -> None:
        """Stop at once (polls in flight are abandoned: the server frees them), and re-raise
        whatever failed in the followers' thread."""
        self._stop.set()
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
        if self._thread.is_alive():
            raise AssertionError("the followers did not stop within 10 s")
        if self._error is not None:
            raise self._error

    def wait_for(self, count: int, deadline: float, among: range | None = None) -> bool:
        """Until every follower (of ``among``: indexes) received ``count`` notifications (or the deadline passes)."""
        end = time.monotonic() + deadline
        which = among if among is not None else range(len(self.tokens))
        while time.monotonic() < end:
            if all(len(self.received[i]) >= count for i in which):
                return True
            time.sleep(0.02)
        return False

    def latencies(self, since: float, ids: list[int] | None = None) -> list[float]:
        """Per follower: seconds from ``since`` (a time.monotonic()) to the arrival of its first
        notification in ``ids`` (any, if None) that arrived after ``since``; inf if none did."""
        wanted = None if ids is None else set(ids)
        found = []
        for arrivals in self.arrivals:
            times = [at for pk, at in arrivals if at >= since and (wanted is None or pk in wanted)]
            found.append(min(times) - since if times else math.inf)
        return found

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except asyncio.CancelledError:
            pass  # stopped
        except BaseException as error:  # noqa: BLE001 - surfaced by stop()
            self._error = error

    async def _run(self) -> None:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        self._running.set()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(self._follow(session, i) for i in range(len(self.tokens))))

    async def _follow(self, session: aiohttp.ClientSession, index: int) -> None:
        headers = {"Authorization": f"Bearer {self.tokens[index]}"}
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                async with session.get(
                    f"{self.base_url}/notify/poll",
                    headers=headers,
                    params={"after": self.cursors[index], "timeout": str(self.timeout)},
                ) as reply:
                    status = reply.status
                    page = await reply.json() if status == 200 else None
            except aiohttp.ClientError:
                status, page = 0, None
            answered = time.monotonic()
            self.statuses.append(status)
            self.polls.append((sent, answered - sent, status))
            if page is None:
                await asyncio.sleep(0.5)
                continue
            ids = [n["id"] for n in page["notifications"]]
            self.received[index] += ids
            self.arrivals[index] += [(pk, answered) for pk in ids]
            self.cursors[index] = page["cursor"]


def bounded(target: Callable[[], T], seconds: float) -> tuple[T, float]:
    """``target()`` in a thread of its own (its database connections closed after), and how long it
    took; fails if it does not return within ``seconds`` (the thread is left to finish)."""
    from django.db import connections

    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, target()))
        except BaseException as error:  # noqa: BLE001 - re-raised below, in the test
            outcome.append((False, error))
        finally:
            connections.close_all()

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    took = time.monotonic() - started
    if not outcome:
        raise AssertionError(f"{getattr(target, '__name__', target)} did not return within {seconds} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value, took


class OwnPostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder, run as
    the postgres user), on its own port, which a test may restart."""

    BIN = "/usr/lib/postgresql/15/bin"

    def __init__(self) -> None:
        import tempfile

        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="notify-pg-")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = (
            f"{self.BIN}/pg_ctl -D {self.dir}/data -l {self.dir}/pg.log -w "
            f"-o '-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off' {' '.join(args)}"
        )
        subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", command], check=True, capture_output=True, timeout=60)

    def start(self) -> OwnPostgres:
        import os
        import shutil

        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres")
        subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", f"{self.BIN}/initdb -D {self.dir}/data -A trust -U postgres"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._pg_ctl("start")
        return self

    def restart(self) -> None:
        self._pg_ctl("-m", "fast", "restart")

    def destroy(self) -> None:
        import shutil

        try:
            self._pg_ctl("-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
