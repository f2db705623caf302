"""The production settings profile passes Django's deployment checks."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.server import ROOT


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    environment.update(DJANGO_SETTINGS_MODULE="project.settings_production", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_production_profile_passes_check_deploy():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="x" * 20 + "-a-long-random-production-secret-value-1234",
        DJANGO_ALLOWED_HOSTS="notify.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_profile_refuses_to_start_without_a_secret():
    result = manage("check", DJANGO_ALLOWED_HOSTS="notify.example.com")
    assert result.returncode != 0
    assert "Set DJANGO_SECRET_KEY" in result.stderr
