"""The benchmark's smoke run: CI checks that it still works, never how fast."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    # Each script uses its own SQLite file and Redis channel prefix, so it stays out
    # of the test databases.
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )


def quick_results() -> list[dict[str, Any]]:
    return json.loads((ROOT / "var" / "bench-quick.json").read_text())["results"]


def test_the_quick_benchmark_delivers_every_notification_exactly_once():
    # bench/run.py --quick holds 200 polls on a real uvicorn, sends at a steady rate and
    # broadcasts, and exits 1 on any loss, duplicate or error.
    result = run_quick("run.py", "--variants", "uvicorn")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "quick: OK" in result.stdout


def test_the_quick_benchmark_with_session_cookies_delivers_every_notification_exactly_once():
    # The same with browsers' credentials: 200 users logged in, each polling with its
    # session cookie, which the server verifies (the run fails unless a forged session
    # is refused); steady sends and a broadcast, every notification read exactly once.
    result = run_quick("run.py", "--variants", "uvicorn-session")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "quick: OK" in result.stdout
    (run,) = quick_results()
    assert (run["variant"], run["auth"], run["ramp"]["held"]) == ("uvicorn-session", "session", 200)
    assert run["client"]["requests"] > 0 and run["client"]["errors"] == {}


@pytest.mark.django_db
def test_bench_sessions_hold_what_login_stores(monkeypatch: pytest.MonkeyPatch, django_user_model: Any) -> None:
    # The benchmark writes its sessions in bulk: their data must be what
    # django.contrib.auth.login() itself leaves in a session, auth hash included.
    from django.conf import settings
    from django.contrib.auth import login
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpRequest

    monkeypatch.setattr(sys, "path", list(sys.path))  # bench/run.py puts bench/ on it
    run = importlib.import_module("bench.run")
    user = django_user_model.objects.create_user(username="bench-login", password="pw")
    request = HttpRequest()
    request.session = SessionStore()  # in the database only, not in the cache
    login(request, user)
    assert run.logged_in_session(user, settings.AUTHENTICATION_BACKENDS[0]) == dict(request.session.items())


def test_polls_abandoned_and_replaced_under_load_lose_nothing_and_are_freed():
    # bench/churn.py --quick: 200 held polls, 50 a second abandoned mid-flight and
    # replaced from their cursor while notifications are sent; exits 1 on any loss,
    # duplicate, error, or subscription left once the clients are gone.
    result = run_quick("churn.py")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "churn: OK" in result.stdout


def test_the_quick_benchmark_against_nchan_delivers_every_notification_exactly_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # bench/run.py --quick --variants nchan: 200 long polls held by Nchan (Debian's nginx +
    # libnginx-mod-nchan, what notify is compared with), each on its user's channel and the
    # broadcast channel, following Nchan's Last-Modified/Etag cursor; the same steady sends and
    # broadcast, published to Nchan; exits 1 on any loss, duplicate or error.
    monkeypatch.setattr(sys, "path", list(sys.path))  # bench/nchan.py puts bench/ on it
    missing = importlib.import_module("bench.nchan").missing()
    if missing is not None:
        pytest.skip(f"{missing}: `make bench-deps` installs it, as root (CI does not: it has no time to spare)")
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("Nchan uses no database, and the quick run is on SQLite anyway: run on the SQLite pass only")
    result = run_quick("run.py", "--variants", "nchan")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "quick: OK" in result.stdout
    (run,) = quick_results()
    assert (run["variant"], run["ramp"]["held"], run["broadcast"]["received"]) == ("nchan", 200, 200)
    # 3 s at 200/s, then the broadcast: one message that each of the 200 clients counts as its own.
    assert run["sent_total"] == 3 * 200 + 200 and run["latency_ms"]["count"] == 3 * 200
    assert run["client"]["errors"] == {} and run["server_log_errors"] == 0
