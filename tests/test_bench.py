"""The benchmark's smoke run: CI checks that it still works, never how fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def test_the_quick_benchmark_delivers_every_notification_exactly_once():
    # bench/run.py --quick holds 200 polls on a real uvicorn, sends at a steady rate and
    # broadcasts, and exits 1 on any loss, duplicate or error. It uses its own SQLite
    # file and Redis channel prefix, so it stays out of the test databases.
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=170,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "quick: OK" in result.stdout
