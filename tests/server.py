"""A real uvicorn serving the demo project over HTTP, on a free loopback port."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
STATE_PATH = "/__tests__/state"  # tests/asgi.py


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """A DATABASE_URL naming the test database this process set up."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A uvicorn process. ``env`` is added to the environment it starts with."""

    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # The demo's application behind tests/asgi.py's test-only state route (see ``state``).
    app: str = "tests.asgi:application"
    # stop() fails if the server logged a traceback (this run's part of the log): whatever a
    # test throws at it, the app never fails inside. Off only for a test that makes it fail.
    check_log: bool = True
    log_offset: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: float = 20.0) -> Server:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": test_database_url(),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        log_dir = ROOT / "var" / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"uvicorn-{self.port}.log"
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}: {self.log()}")
            try:
                if self.request("GET", "/notify/poll").status == 401:
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not answer within {wait} s: {self.log()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); then fail if its log shows a
        traceback (see ``check_log``). Stopping a stopped server checks nothing again."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.check_log:
            self.check_log = False  # once
            self.assert_no_tracebacks()

    def own_log(self) -> str:
        """What this server wrote to its log (a port's log file may hold earlier runs' too)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def assert_no_tracebacks(self) -> None:
        log = self.own_log()
        for sign in ("Traceback (most recent call last)", "Exception in ASGI application"):
            if sign in log:
                at = log.index(sign)
                raise AssertionError(
                    f"the server on port {self.port} logged a traceback ({self.log_path}):\n{log[at - 500 : at + 3000]}"
                )

    def state(self) -> dict[str, Any]:
        """What the server holds now (tests/asgi.py: held polls, waiting/listening subscriptions
        by channel, Redis channels subscribed). With several workers: the one that answers."""
        reply = self.request("GET", STATE_PATH, timeout=5)
        if reply.status != 200:
            raise AssertionError(f"{STATE_PATH} answered {reply.status}: {reply.body[:2000]!r}")
        return reply.json()

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], timeout: float = 10.0, what: str = ""
    ) -> dict[str, Any]:
        """Until ``condition(self.state())`` holds; the state that satisfied it. Fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.state()
            if condition(current):
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or condition} not reached within {timeout} s; state: {current}")
            time.sleep(0.02)

    def wait_for_held_polls(
        self, n: int, user_id: int | None = None, *, timeout: float = 10.0, listening: bool = True
    ) -> dict[str, Any]:
        """Until exactly ``n`` polls (of ``user_id``, or of everyone) are held, and each of them
        has checked the database and is waiting, subscribed with Redis's confirmation (with
        ``listening=False``: waiting, confirmed or not, e.g. while Redis is down). ``n=0``: until
        every such poll was answered. The state that satisfied it.
        """
        key = "listening" if listening else "waiting"

        def reached(state: dict[str, Any]) -> bool:
            if user_id is None:
                return state["held"] == n and state[f"{key}_polls"] == n
            polls = state["users"].get(str(user_id), {"held": 0, key: 0})
            return polls["held"] == n and polls[key] == n

        whose = "" if user_id is None else f" of user {user_id}"
        return self.wait_for(reached, timeout, f"{n} held {key} polls{whose}")

    def log(self) -> str:
        return self.own_log()[-4000:]

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 30.0,
    ) -> Response:
        if params:
            path = f"{path}?{urlencode(params)}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
        finally:
            conn.close()

    def poll(
        self, token: str | None = None, *, cookies: str | None = None, http_timeout: float = 70.0, **params: Any
    ) -> Response:
        """GET /notify/poll; keyword arguments other than these become the query string."""
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if cookies:
            headers["Cookie"] = cookies
        return self.request("GET", "/notify/poll", params=params, headers=headers, timeout=http_timeout)


def expect_error(reply: Response, status: int, code: str) -> dict[str, Any]:
    """``reply`` is the error docs/http.md promises: ``status``, a JSON body with ``error`` ==
    ``code`` and a ``detail``, not cached; 401 with ``WWW-Authenticate: Bearer``, 429 and 503
    with ``Retry-After``. Its body."""
    assert reply.status == status, (reply.status, reply.body[:500])
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    assert reply.headers.get("cache-control") == "no-store", reply.headers
    body = reply.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    if status == 401:
        assert reply.headers.get("www-authenticate", "").startswith("Bearer"), reply.headers
    if status in (429, 503):
        assert int(reply.headers["retry-after"]) > 0, reply.headers
    return body


def expect_page(reply: Response, cursor: str, titles: list[str] | None = None) -> dict[str, Any]:
    """``reply`` is an inbox poll's 200 page: the ``titles`` given (none: empty), oldest first, and
    ``cursor`` if nothing came (a timed-out poll: "an empty list and the same cursor"). Its body."""
    assert reply.status == 200, (reply.status, reply.body[:500])
    assert reply.headers.get("cache-control") == "no-store", reply.headers
    page = reply.json()
    assert [n["title"] for n in page["notifications"]] == (titles or []), page
    assert isinstance(page["unread_count"], int), page
    if not titles:
        assert page["cursor"] == cursor, page
    else:
        assert int(page["cursor"]) > int(cursor), page
    return page


def host_of(url: str) -> str:
    return urlsplit(url).netloc


@contextmanager
def two_workers(make: Callable[[], Server]) -> Iterator[tuple[Server, Server]]:
    """Two servers from ``make`` (workers sharing Redis and the database), both stopped after;
    the first is stopped too if the second fails to start."""
    first = make().start()
    try:
        second = make().start()
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()
