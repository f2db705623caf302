"""SIGTERM under every ASGI server the benchmark runs (bench/stack.py), and under gunicorn with
uvicorn workers: a held poll is answered at once (200, nothing new, the same cursor), and the
server process exits within 2 s, whatever signal handler the server had installed (uvicorn's,
an asyncio loop's, Twisted's, none at all) and whichever of its processes receives the signal.

tests/test_shutdown.py covers the answers themselves (inbox, topic, multi-stream, sends during
the drain) on uvicorn; this file covers the servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import notify
from tests import server as live
from tests.server import ROOT, Response, Server, expect_page

BIN = Path(sys.executable).parent
APP = "tests.asgi:application"  # the demo's application, plus the test-state route

# How each server is started: as bench/stack.py starts it (its graceful timeouts of 5 s
# included, so that an exit within 2 s is notify's doing, not a timeout's), serving APP.
COMMANDS: dict[str, list[str]] = {
    "uvicorn": [
        str(BIN / "python"),
        "-m",
        "uvicorn",
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "5",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        APP,
    ],
    "hypercorn": [
        str(BIN / "hypercorn"),
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "1",
        "--graceful-timeout",
        "5",
        APP,
    ],
    # No worker process: hypercorn's own signal handlers, in the process that serves.
    "hypercorn-workers-0": [
        str(BIN / "hypercorn"),
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "0",
        "--graceful-timeout",
        "5",
        APP,
    ],
    "daphne": [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", "{port}", "--access-log", "/dev/null", APP],
    "granian": [
        str(BIN / "granian"),
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
        "--workers-kill-timeout",
        "5",
        APP,
    ],
    "gunicorn-uvicorn": [
        str(BIN / "gunicorn"),
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "1",
        "--worker-class",
        "uvicorn.workers.UvicornWorker",
        "--graceful-timeout",
        "5",
        APP,
    ],
}


class ServerUnder(Server):
    """tests/server.py's Server (state, polls, log checks), started with another server's command."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.workers: list[tuple[int, str]] = []  # the processes it started: (pid, start time)

    def start(self, wait: float = 20.0) -> ServerUnder:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": live.test_database_url(),
            "PYTHONUNBUFFERED": "1",
        }
        log_dir = ROOT / "var" / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}-{self.port}.log"
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [part.replace("{port}", str(self.port)) for part in COMMANDS[self.name]]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log()}")
            try:
                if self.request("GET", "/notify/poll", timeout=5).status == 401:
                    self.workers = [(pid, _started(pid)) for pid in _children(self.process.pid)]
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {wait} s: {self.log()}")

    def stop(self, timeout: float = 10.0) -> None:
        """As Server.stop; and SIGKILL any worker process it left behind (by PID, if that PID is
        still the process it started)."""
        try:
            super().stop(timeout)
        finally:
            for pid, started in self.workers:
                if _started(pid) == started:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def _started(pid: int) -> str:
    """When process ``pid`` started (/proc/PID/stat, field 22), "" if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (the servers' workers), from /proc."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            direct = [int(child) for child in file.read().split()]
    except OSError:
        return []
    return direct + [grandchild for child in direct for grandchild in _children(child)]


HYPERCORN_MASTER = (
    "hypercorn's master does not pass SIGTERM on to its workers: it tells them through a "
    "multiprocessing event that no application can see, and they wait --graceful-timeout for held "
    "requests, then cut them (docs/deploy.md: signal the process group, or run --workers 0)"
)

# (server, which process gets SIGTERM): "main", the process the server was started as (what
# `docker stop` or Kubernetes signal), or "worker", the one holding the poll (its pid from the
# test-state route). A hypercorn worker has no SIGTERM handler of its own: notify's is chained
# in front of the default action, and must end the process once the poll is answered.
CASES = [
    pytest.param("uvicorn", "main", id="uvicorn"),
    pytest.param("gunicorn-uvicorn", "main", id="gunicorn-uvicorn-workers"),
    pytest.param("granian", "main", id="granian"),
    pytest.param("daphne", "main", id="daphne-no-lifespan"),
    pytest.param("hypercorn-workers-0", "main", id="hypercorn-workers-0"),
    pytest.param("hypercorn", "worker", id="hypercorn-worker-default-handler"),
    pytest.param(
        "hypercorn", "main", id="hypercorn-master", marks=pytest.mark.xfail(strict=True, reason=HYPERCORN_MASTER)
    ),
]


@pytest.mark.parametrize(("name", "target"), CASES)
def test_sigterm_answers_the_held_poll_and_the_server_exits_within_2_seconds(
    name: str, target: str, make_user: Any, token_for: Any
) -> None:
    user = make_user()
    token = token_for(user)
    notify.send(user, "unread, so that the cursor is not 0")
    server = ServerUnder(name).start()
    try:
        cursor = server.poll(token).json()["cursor"]
        replies: list[Response | BaseException] = []

        def hold() -> None:
            try:
                replies.append(server.poll(token, after=cursor, timeout=30, http_timeout=15))
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                replies.append(error)

        poll = threading.Thread(target=hold, daemon=True)
        poll.start()
        held = server.wait_for_held_polls(1, user.pk)
        assert server.process is not None
        pid = server.process.pid if target == "main" else held["pid"]
        assert target == "main" or pid != server.process.pid, "no worker process"
        os.kill(pid, signal.SIGTERM)
        signalled = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(10)
        exited_within = time.monotonic() - signalled
        poll.join(10)
    finally:
        server.stop()

    assert len(replies) == 1 and isinstance(replies[0], Response), replies
    expect_page(replies[0], cursor)  # 200, nothing new, the same cursor
    assert exited_within < 2, f"{name} exited {exited_within:.2f} s after SIGTERM:\n{server.log()}"
