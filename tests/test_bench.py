"""The benchmark's smoke run: CI checks that it still works, never how fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str) -> subprocess.CompletedProcess[str]:
    # Each script uses its own SQLite file and Redis channel prefix, so it stays out
    # of the test databases.
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )


def test_the_quick_benchmark_delivers_every_notification_exactly_once():
    # bench/run.py --quick holds 200 polls on a real uvicorn, sends at a steady rate and
    # broadcasts, and exits 1 on any loss, duplicate or error.
    result = run_quick("run.py")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "quick: OK" in result.stdout


def test_polls_abandoned_and_replaced_under_load_lose_nothing_and_are_freed():
    # bench/churn.py --quick: 200 held polls, 50 a second abandoned mid-flight and
    # replaced from their cursor while notifications are sent; exits 1 on any loss,
    # duplicate, error, or subscription left once the clients are gone.
    result = run_quick("churn.py")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "churn: OK" in result.stdout
