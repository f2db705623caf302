"""The servers under test, the load generator process, and what /proc says about them.

Every process here is started by us, through bench/child.py: on loopback, with
its open-file soft limit raised to the hard one and with PR_SET_PDEATHSIG, so
that it dies with the orchestrator even if the orchestrator is killed. Stopping
is by the pids we recorded, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# What the uvicorn-metrics variant's scrapes send (bench/run.py reads the metrics at the end of a run).
METRICS_TOKEN = "bench-metrics-token-not-a-secret"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def as_child(command: list[str]) -> list[str]:
    """``command`` run through bench/child.py (fd limit raised, dies with us)."""
    return [str(BIN / "python"), str(ROOT / "bench" / "child.py"), str(os.getpid()), *command]


# --- /proc ----------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (servers that fork workers: gunicorn, granian, hypercorn)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# The variants that are one uvicorn worker, uvloop + httptools, and differ in settings or clients.
ONE_UVICORN_WORKER = ("uvicorn", "uvicorn-stock-gc", "uvicorn-session", "uvicorn-session-digests", "uvicorn-metrics")


@dataclass
class Sample:
    """One look at a process tree: memory, threads, CPU and open files, summed."""

    t: float
    rss_kb: int
    threads: int
    cpu: float  # utime + stime, seconds
    fds: int
    pids: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"rss_kb": self.rss_kb, "threads": self.threads, "cpu": self.cpu, "fds": self.fds}


def sample(pids: list[int]) -> Sample:
    rss = threads = fds = 0
    cpu = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as file:
                for line in file:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads += int(line.split()[1])
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, IndexError):
            continue  # gone meanwhile
    return Sample(time.monotonic(), rss, threads, cpu, fds, pids)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as file:
        fields = [int(x) for x in file.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def cpu_of(pid: int | None) -> float:
    """utime + stime of one process we may not own (Redis), 0 if unreadable."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError):
        return 0.0


# --- the servers ------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    mode: str  # "long" or "short" polling by the clients, or "nchan" (Nchan's long-poll protocol)
    kind: str  # "asgi" or "wsgi", or "nchan" (nginx, bench/nchan.py)
    env: tuple[tuple[str, str], ...] = ()  # set for the server process
    # How the clients authenticate: "token" (Bearer), "session" (Django's session cookie), "none" (Nchan).
    auth: str = "token"

    def command(self, port: int, n: int) -> list[str]:
        py = str(BIN / "python")
        host = ["--host", "127.0.0.1", "--port", str(port)]
        uvicorn = [
            py,
            "-m",
            "uvicorn",
            *host,
            "--no-access-log",
            "--backlog",
            "4096",
            "--timeout-graceful-shutdown",
            "5",
        ]
        fast = ["--loop", "uvloop", "--http", "httptools"]
        if self.name in ONE_UVICORN_WORKER:
            return [*uvicorn, *fast, "project.asgi:application"]
        if self.name == "uvicorn-2workers":
            # Scale-out on one machine (docs/deploy.md): two worker processes on one socket,
            # each with its own event loop and Redis hub.
            return [*uvicorn, *fast, "--workers", "2", "project.asgi:application"]
        if self.name == "uvicorn-h11":
            return [*uvicorn, "--loop", "asyncio", "--http", "h11", "project.asgi:application"]
        if self.name == "uvicorn-django":
            return [*uvicorn, *fast, "project.asgi:django_application"]
        if self.name == "short-poll":
            # Keep connections between polls 5 s apart (uvicorn's default keep-alive is 5 s).
            return [*uvicorn, *fast, "--timeout-keep-alive", "30", "project.asgi:application"]
        if self.name == "granian":
            return [
                str(BIN / "granian"),
                "--interface",
                "asgi",
                *host,
                "--workers",
                "1",
                "--loop",
                "uvloop",
                "--backlog",
                "4096",
                "--backpressure",
                str(n + 1000),
                "--no-ws",
                "--log-level",
                "warning",
                "--workers-kill-timeout",
                "5",
                "project.asgi:application",
            ]
        if self.name == "hypercorn":
            return [
                str(BIN / "hypercorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--worker-class",
                "uvloop",
                "--backlog",
                "4096",
                "--graceful-timeout",
                "5",
                "project.asgi:application",
            ]
        if self.name == "daphne":
            return [
                str(BIN / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "-v",
                "1",
                "--access-log",
                "/dev/null",
                "project.asgi:application",
            ]
        if self.name == "gunicorn-gthread":
            return [
                str(BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                str(n + 64),
                # Room for keep-alive connections beyond the busy threads, or gthread closes each.
                "--worker-connections",
                str(2 * n + 64),
                "--backlog",
                "4096",
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                "project.wsgi:application",
            ]
        raise ValueError(f"Unknown variant {self.name!r}, must be one of: {', '.join(VARIANTS)}")


VARIANTS = {
    v.name: v
    for v in [
        Variant("uvicorn", "uvicorn, uvloop + httptools, LongPollRouter", "long", "asgi"),
        # The same server; the clients poll as browsers do (the JavaScript client, the demo):
        # with the Django session cookie of a logged-in user instead of a bearer token.
        Variant(
            "uvicorn-session",
            "uvicorn as above, each client polling with a Django session cookie (as browsers do)",
            "long",
            "asgi",
            auth="session",
        ),
        # Browsers' polls with email digests on (docs/email.md): each held inbox poll also marks,
        # in Redis, what the page has received (notify.receipts). Beside "uvicorn-session", its cost.
        Variant(
            "uvicorn-session-digests",
            "uvicorn-session with NOTIFY['EMAIL_DIGESTS'] on (held polls mark what pages received)",
            "long",
            "asgi",
            (("NOTIFY_EMAIL_DIGESTS", "1"),),
            auth="session",
        ),
        Variant(
            "uvicorn-stock-gc",
            "uvicorn as above, CPython's default garbage collector settings",
            "long",
            "asgi",
            (("NOTIFY_STOCK_GC", "1"),),
        ),
        # The same server with Prometheus metrics on (docs/metrics.md), in multiprocess mode as a
        # deployment of several workers runs them: run beside "uvicorn", it gives their cost.
        Variant(
            "uvicorn-metrics",
            "uvicorn as above, NOTIFY['METRICS'] on (multiprocess mode)",
            "long",
            "asgi",
            (
                ("NOTIFY_METRICS", "1"),
                ("NOTIFY_METRICS_TOKEN", METRICS_TOKEN),
                ("PROMETHEUS_MULTIPROC_DIR", str(ROOT / "var" / "bench-prometheus")),
            ),
        ),
        Variant("short-poll", "short polling every 5 s, uvicorn uvloop + httptools", "short", "asgi"),
        Variant("gunicorn-gthread", "gunicorn gthread, WSGI, a thread per poll", "long", "wsgi"),
        Variant("uvicorn-django", "uvicorn, plain Django ASGI handler (no LongPollRouter)", "long", "asgi"),
        Variant("uvicorn-h11", "uvicorn, asyncio + h11, LongPollRouter", "long", "asgi"),
        Variant("uvicorn-2workers", "uvicorn --workers 2 (two processes), LongPollRouter", "long", "asgi"),
        Variant("granian", "granian (ASGI, uvloop), LongPollRouter", "long", "asgi"),
        Variant("hypercorn", "hypercorn (uvloop), LongPollRouter", "long", "asgi"),
        Variant("daphne", "daphne (Twisted), LongPollRouter", "long", "asgi"),
        # Not notify: the C module inside nginx that long-poll users pick for speed, measured by
        # the same load generator, the same N and the same phases (bench/nchan.py).
        Variant(
            "nchan",
            "Nchan (Debian's nginx + libnginx-mod-nchan), one worker, long-poll on a per-user and a broadcast channel",
            "nchan",
            "nchan",
            auth="none",
        ),
    ]
}


@dataclass
class Server:
    variant: Variant
    n: int
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    known_pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: float = 30.0) -> Server:
        env = {**os.environ, **self.env, **dict(self.variant.env), "PYTHONUNBUFFERED": "1"}
        if "PROMETHEUS_MULTIPROC_DIR" in env:
            # Emptied at every start, as docs/metrics.md asks of a deployment.
            directory = Path(env["PROMETHEUS_MULTIPROC_DIR"])
            directory.mkdir(parents=True, exist_ok=True)
            for stale in directory.glob("*.db"):
                stale.unlink()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                as_child(self.variant.command(self.port, self.n)),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.variant.name} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/notify/poll", timeout=5)
            except urllib.error.HTTPError as error:
                if error.code == 401:
                    self.pids()  # remember the workers, to stop them by pid later
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.variant.name} did not answer within {wait} s: {self.log_tail()}")

    def pids(self) -> list[int]:
        assert self.process is not None
        pids = [self.process.pid, *children_of(self.process.pid)]
        self.known_pids.update(pids)
        return pids

    def worker_pid(self) -> int:
        """The process that serves requests: the largest of the tree (workers load the app)."""
        pids = self.pids()
        return max(pids, key=lambda pid: (sample([pid]).rss_kb, pid))

    def sample(self) -> Sample:
        return sample(self.pids())

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL for whatever of ours is still there. The exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.pids()
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.known_pids - {self.process.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # a worker its master left behind
        return self.process.returncode

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def log_problems(self) -> dict[str, int]:
        """Lines of the server's log that tell of a problem, by message (digits and ids blanked)."""
        if not self.log_path.exists():
            return {}
        problems: dict[str, int] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            if PROBLEM.search(line):
                key = re.sub(r"\d+", "N", line.strip())[:200]
                problems[key] = problems.get(key, 0) + 1
        return problems


PROBLEM = re.compile(r"error|exception|traceback|took over|warning|critical|timed out|refused", re.IGNORECASE)


# --- the load generator -------------------------------------------------------------

AUTH_MODES = ("token", "session", "none")


def auth_headers(auth: str, credential: str) -> dict[str, str]:
    """The header a client sends with every poll: ``credential`` is a bearer token
    (``auth="token"``) or a whole cookie pair, ``sessionid=<key>`` (``auth="session"``)."""
    if auth == "token":
        return {"Authorization": f"Bearer {credential}"}
    if auth == "session":
        return {"Cookie": credential}
    if auth == "none":  # Nchan: the channel is in the URL
        return {}
    raise ValueError(f"Unknown auth mode {auth!r}, must be one of: {', '.join(AUTH_MODES)}")


class LoadGen:
    """bench/loadgen.py in a process of its own, driven one JSON line at a time."""

    def __init__(
        self,
        url: str,
        credentials_file: Path,
        mode: str,
        *,
        auth: str = "token",
        timeout: float,
        interval: float,
        ramp_rate: float,
        ramp_concurrency: int,
        catch_up_seconds: float,
        max_seconds: float,
        log_path: Path,
        abandon_after: float = 0.0,
    ) -> None:
        command = [
            str(BIN / "python"),
            str(ROOT / "bench" / "loadgen.py"),
            "--url",
            url,
            "--credentials",
            str(credentials_file),
            "--auth",
            auth,
            "--mode",
            mode,
            "--timeout",
            str(timeout),
            "--interval",
            str(interval),
            "--ramp-rate",
            str(ramp_rate),
            "--ramp-concurrency",
            str(ramp_concurrency),
            "--catch-up-seconds",
            str(catch_up_seconds),
            "--max-seconds",
            str(max_seconds),
            "--uvloop",
            "--abandon-after",
            str(abandon_after),
        ]
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            as_child(command),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._next(30)
        self.pid = ready["pid"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the load generator did not answer within {timeout} s") from None
        if not line:
            raise RuntimeError(f"the load generator exited ({self.process.poll()})")
        return json.loads(line)

    def ask(self, command: str, timeout: float = 30.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        return self._next(timeout)

    def cpu(self) -> float:
        return sample([self.process.pid]).cpu

    def stop(self) -> dict[str, Any] | None:
        final = None
        try:
            if self.process.poll() is None:
                final = self.ask("stop", timeout=30)
        except (RuntimeError, OSError, ValueError):
            pass
        finally:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.log.close()
        return final
