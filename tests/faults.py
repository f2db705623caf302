"""Real processes to break: a redis-server of the test's own, and clients that follow cursors."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from dataclasses import dataclass, field

import aiohttp
import redis

from tests.server import ROOT, free_port


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
        with open(ROOT / "var" / "logs" / f"redis-{self.port}.log", "ab") as log:
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
            self.process.kill()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


class Followers:
    """Clients that each follow one user's cursor, as the JS and Python clients do,
    in an event loop of their own; they record every notification id and status."""

    def __init__(self, base_url: str, tokens: list[str], cursors: list[str], timeout: float = 5) -> None:
        self.base_url = base_url
        self.tokens, self.cursors, self.timeout = tokens, cursors, timeout
        self.received: list[list[int]] = [[] for _ in tokens]
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Followers:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 10)

    def wait_for(self, count: int, deadline: float) -> bool:
        """Until every follower received ``count`` notifications (or the deadline passes)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if all(len(got) >= count for got in self.received):
                return True
            time.sleep(0.05)
        return False

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(self._follow(session, i) for i in range(len(self.tokens))))

    async def _follow(self, session: aiohttp.ClientSession, index: int) -> None:
        cursor = self.cursors[index]
        headers = {"Authorization": f"Bearer {self.tokens[index]}"}
        while not self._stop.is_set():
            try:
                async with session.get(
                    f"{self.base_url}/notify/poll",
                    headers=headers,
                    params={"after": cursor, "timeout": str(self.timeout)},
                ) as reply:
                    self.statuses.append(reply.status)
                    if reply.status != 200:
                        await asyncio.sleep(0.5)
                        continue
                    page = await reply.json()
            except aiohttp.ClientError:
                self.statuses.append(0)
                await asyncio.sleep(0.5)
                continue
            self.received[index] += [n["id"] for n in page["notifications"]]
            cursor = page["cursor"]


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
