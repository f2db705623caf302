"""The terminal sessions in README.md and docs/*.md, run as written after `make run`.

A fenced block tagged ``console`` is a session a reader types in a second terminal
while `make run` serves the demo, from the repository root:

- ``$ <command>`` is a command; the lines after it, up to the next command, are what
  it prints (stdout and stderr, blank lines aside). Timestamps, tokens,
  ``time``'s durations and topic messages' ids may differ (the demo's presence writes
  join and leave events as topic messages too, as polls come and go, so a message's id
  depends on who was polling); everything else must match, byte for byte.
- ``#   $ <command>`` is typed in *another* terminal while the command above it is
  held (a long poll, a client following a stream); the comment lines after it
  (``#   <text>``) are what that command prints. Other comment lines are prose.
- A line ``^C``: the reader stops the command with Ctrl-C once its output above
  has appeared.

Blocks of other kinds (``sh`` for make, deploy and benchmark commands, ``text``
for usage synopses) are not run. Every page starts from the state `make run` leaves
on a new machine: a migrated SQLite database with the demo users, uvicorn serving
``project.asgi:application`` and the reminder scheduler beside it. Only the host
and port in the commands are replaced, by those of the server started here. The
commands run from a stand-in for the repository root (its entries linked, with a
``var/`` of its own) so that files they write, like a cursor file in ``var/``,
neither clobber a reader's nor collide with a parallel run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.server import ROOT, Server

PYTHON = str(ROOT / ".venv" / "bin" / "python")
DOCUMENTED_HOST = "127.0.0.1:8000"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
BLOCK = re.compile(r"^```console\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)")
TOPIC_MESSAGE_ID = re.compile(r'("id": ?)\d+(, ?"topic": ?)')  # a topic message's id (not its seq)
TOKEN = re.compile(r"ntf_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")  # notify_token prints a new one each time
DURATION = re.compile(r"^(real|user|sys)\s+\d+m\d+(?:\.\d+)?s$")
COMMAND_TIMEOUT = 40.0  # longer than any documented poll (25 s)

on_sqlite_leg = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="the docs' sessions run on a SQLite database of their own, as `make run` does: the SQLite leg runs them",
)


@dataclass
class Step:
    command: str
    output: list[str] = field(default_factory=list)
    # Commands typed in another terminal while this one is held, each with its output.
    meanwhile: list[Step] = field(default_factory=list)
    interrupt: bool = False  # the reader presses Ctrl-C once the output has appeared

    @property
    def where(self) -> str:
        return f"$ {self.command}"


def parse_session(block: str) -> list[Step]:
    steps: list[Step] = []
    aside: Step | None = None  # the other terminal's command the comment lines belong to
    for line in block.splitlines():
        other = re.match(r"#\s+\$ (.*)", line)
        if line.startswith("$ "):
            steps.append(Step(line[2:]))
            aside = None
        elif other:
            assert steps, f"{line!r}: a command in another terminal needs a held command above it"
            aside = Step(other[1])
            steps[-1].meanwhile.append(aside)
        elif line.startswith("#"):
            if aside is not None:
                aside.output.append(re.sub(r"^#\s+", "", line))
        elif line.strip() == "^C":
            steps[-1].interrupt = True
        elif line.strip():
            assert steps, f"{line!r}: output before any command"
            steps[-1].output.append(line)
    return steps


def sessions(page: Path) -> list[list[Step]]:
    return [parse_session(block) for block in BLOCK.findall(page.read_text())]


def normalise(lines: list[str]) -> list[str]:
    """What must match: timestamps, tokens, durations and topic messages' ids differ from run to run."""
    out = []
    for line in lines:
        line = line.rstrip()
        if not line:
            continue
        duration = DURATION.match(line)
        out.append(
            f"{duration[1]}\t<duration>"
            if duration
            else TOPIC_MESSAGE_ID.sub(r"\1<id>\2", TOKEN.sub("<token>", TIMESTAMP.sub("<timestamp>", line)))
        )
    return out


PAGES_WITH_SESSIONS = [page for page in PAGES if sessions(page)]


def test_the_readme_and_the_http_contract_have_sessions() -> None:
    """The walk-throughs this file exists for are still marked to run."""
    names = {page.relative_to(ROOT).as_posix() for page in PAGES_WITH_SESSIONS}
    assert {"README.md", "docs/http.md"} <= names


@dataclass
class Demo:
    """What `make run` leaves, for one page: its server, scheduler, database and working directory."""

    server: Server
    env: dict[str, str]
    workdir: Path
    prefix: str
    state: Path  # the shell variables the page's commands have set so far

    def command(self, step: Step) -> str:
        command = step.command.replace(DOCUMENTED_HOST, f"127.0.0.1:{self.server.port}")
        # Variables a command sets (TOKEN=..., export ...) stay set for the next ones,
        # as in the reader's terminal.
        return f"set -a\n. {self.state}\n{command}\nstatus=$?\nexport -p > {self.state}\nexit $status\n"

    def start(self, step: Step, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            return subprocess.Popen(
                ["bash", "-c", self.command(step)],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to the command's own process group
            )

    def held_polls(self, client: redis.Redis) -> int:
        """Channels this page's server subscribes for polls (each held poll subscribes its streams)."""
        return sum(len(client.pubsub_channels(f"{self.prefix}:{kind}:*")) for kind in ("user", "topic"))


@pytest.fixture(scope="module")
def seeded_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database as `make run` leaves it: migrated, with the demo users (copied for each page)."""
    path = tmp_path_factory.mktemp("docs") / "seeded.sqlite3"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DATABASE_URL": f"sqlite:///{path}"}
    for command in (["migrate", "--verbosity", "0"], ["demo_seed"]):
        subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    return path


@pytest.fixture
def demo(seeded_database: Path, tmp_path: Path, redis_client: redis.Redis) -> Iterator[Demo]:
    database = tmp_path / "db.sqlite3"
    shutil.copyfile(seeded_database, database)
    workdir = tmp_path / "root"
    workdir.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != "var":
            (workdir / entry.name).symlink_to(entry)
    (workdir / "var").mkdir()
    prefix = f"{settings.NOTIFY['CHANNEL_PREFIX']}-docs-{os.urandom(3).hex()}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "NOTIFY_CHANNEL_PREFIX": prefix,
    }
    # The server and the scheduler email digests, as `make run` has them (to the console); the
    # reader's second terminal, where the documented commands run, does not have that variable.
    served = {**env, "NOTIFY_EMAIL_DIGESTS": "1"}
    server = Server(
        env={
            key: served[key]
            for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "NOTIFY_CHANNEL_PREFIX", "NOTIFY_EMAIL_DIGESTS")
        }
    )
    server.start()
    scheduler = subprocess.Popen(
        [PYTHON, "manage.py", "notify_scheduler"],
        cwd=ROOT,
        env=served,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = tmp_path / "shell-state"
    state.touch()
    try:
        yield Demo(server, env, workdir, prefix, state)
    finally:
        scheduler.terminate()
        scheduler.wait(10)
        server.stop()
    log = server.log()
    assert "Traceback" not in log, log


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def finish(process: subprocess.Popen[bytes], step: Step) -> None:
    try:
        process.wait(COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"{step.where}: still running after {COMMAND_TIMEOUT} s")


def run_step(demo: Demo, step: Step, log: Path, redis_client: redis.Redis) -> None:
    if step.meanwhile:
        # The reader's other terminal: typed once this command's poll is held. A
        # channel stays subscribed for UNSUBSCRIBE_DELAY after a poll leaves, so
        # first wait until earlier polls have let go.
        wait_for(lambda: demo.held_polls(redis_client) == 0, 10, "earlier polls to let go of their channels")
    process = demo.start(step, log)
    if step.meanwhile:
        wait_for(lambda: demo.held_polls(redis_client) > 0 or process.poll() is not None, 20, f"{step.where} to hold")
        assert process.poll() is None, f"{step.where} answered before it was held:\n{log.read_text()}"
        for index, other in enumerate(step.meanwhile):
            other_log = log.with_name(f"{log.name}.meanwhile{index}")
            other_process = demo.start(other, other_log)
            finish(other_process, other)
            check_step(other, other_process, other_log)
    if step.interrupt:
        expected = normalise(step.output)
        wait_for(lambda: len(normalise(log.read_text().splitlines())) >= len(expected), 20, f"{step.where} to print")
        os.killpg(process.pid, signal.SIGINT)
    finish(process, step)
    check_step(step, process, log)


def check_step(step: Step, process: subprocess.Popen[bytes], log: Path) -> None:
    printed = log.read_text()
    assert process.returncode == 0, f"{step.where} exited with {process.returncode}:\n{printed}"
    assert normalise(printed.splitlines()) == normalise(step.output), f"{step.where} printed:\n{printed}"


@on_sqlite_leg
@pytest.mark.parametrize("page", PAGES_WITH_SESSIONS, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_documented_session_runs_as_written(page: Path, demo: Demo, redis_client: redis.Redis, tmp_path: Path) -> None:
    for number, session in enumerate(sessions(page)):
        for index, step in enumerate(session):
            run_step(demo, step, tmp_path / f"session{number}-step{index}.log", redis_client)


def test_readme_links_lead_to_files_that_exist() -> None:
    """The README is read on GitHub, outside the docs build that checks the pages' links."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if "://" not in target]
    assert local, "the README links into docs/"
    missing = [target for target in local if not (ROOT / target).exists()]
    assert not missing, missing


def test_make_run_takes_host_and_port() -> None:
    """README: `make run PORT=8001` (and HOST=...) serves there."""
    printed = subprocess.run(
        ["make", "--dry-run", "--always-make", "run", "HOST=127.0.0.2", "PORT=8001"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "uvicorn project.asgi:application --host 127.0.0.2 --port 8001" in printed
