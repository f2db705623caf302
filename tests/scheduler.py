"""A real ``manage.py notify_scheduler`` process on the test database, stopped by its PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.server import ROOT, test_database_url


@dataclass
class Scheduler:
    """A notify_scheduler process. ``env`` is added to the environment it starts with."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: ROOT / "var" / "logs" / f"scheduler-{uuid.uuid4().hex[:8]}.log")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, wait: float = 20.0) -> Scheduler:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": test_database_url(),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "notify_scheduler", *self.args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + wait
        while "notify_scheduler: started" not in self.log()[offset:]:
            if self.process.poll() is not None:
                raise RuntimeError(f"notify_scheduler exited with {self.process.returncode}: {self.log()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"notify_scheduler did not start within {wait} s: {self.log()[-3000:]}")
            time.sleep(0.05)
        return self

    def ask_to_stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, by its PID, and wait until it says it received it: it finishes what it has in
        hand and exits (``process.wait()`` tells how)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while "SIGTERM received" not in self.log():
            assert time.monotonic() < deadline and self.running, self.log()[-3000:]
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to our process, by its PID; its exit status (None if it was not running)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def delivered(self) -> int:
        """Reminders this process (all its runs) reports it delivered."""
        return sum(int(n) for n in re.findall(r"delivered (\d+) reminder", self.log()))
