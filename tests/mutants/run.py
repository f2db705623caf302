"""``make mutants``: plant each bug of tests/mutants/mutants.toml and fail if its tests still pass.

For every mutant, in a scratch copy of the working tree (var/mutants/, never the
checkout itself): replace the original text (which must occur exactly once), run
the tests named to kill it, restore the file. A mutant is *killed* when those
tests fail (or run past --timeout); it *survives* when they pass, and then this
fails, listing the survivors. Before any mutant, it checks that every original
text is found exactly once and every test id is collected (so the list cannot rot
silently), and that the named tests pass on the unmutated copy (so a kill means
the bug, not a broken test).

    .venv/bin/python tests/mutants/run.py                 # all of them
    .venv/bin/python tests/mutants/run.py -k views        # those whose name contains "views"
    .venv/bin/python tests/mutants/run.py --list          # names, files, tests
    .venv/bin/python tests/mutants/run.py -j 2            # two scratch copies at once

Mutants marked ``database = "postgres"`` run with DATABASE_URL=--postgres-url
(default postgres://postgres@127.0.0.1:5432/test); the others on SQLite. Each pytest
run makes its own Redis prefix and test database, as ``make test`` does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIST = Path(__file__).resolve().parent / "mutants.toml"
SCRATCH = ROOT / "var" / "mutants"
PYTHON = ROOT / ".venv" / "bin" / "python"
DATABASES = ("sqlite", "postgres")


@dataclass
class Edit:
    file: str
    original: str
    replacement: str


@dataclass
class Mutant:
    name: str
    guarantee: str
    edits: list[Edit]
    tests: list[str]
    database: str = "sqlite"
    pending: str = ""  # who is still to land the test that kills it (reported as such)


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed, survived, error
    seconds: float
    by: list[str] = field(default_factory=list)  # the tests that failed
    output: str = ""


def load(path: Path = LIST) -> list[Mutant]:
    with open(path, "rb") as source:
        data = tomllib.load(source)
    mutants = []
    names = set()
    for entry in data.get("mutant", []):
        name = entry.get("name", "?")
        edits = [Edit(e["file"], e["original"], e["replacement"]) for e in entry.get("edit", [])]
        if "file" in entry:
            edits.insert(0, Edit(entry["file"], entry["original"], entry["replacement"]))
        unknown = set(entry) - {
            "name",
            "guarantee",
            "file",
            "original",
            "replacement",
            "edit",
            "tests",
            "database",
            "pending",
        }
        problems = [
            "a name" if not entry.get("name") else "",
            f"a unique name (twice: {name})" if name in names else "",
            "at least one edit (file, original, replacement)" if not edits else "",
            "tests (node ids that kill it)" if not entry.get("tests") else "",
            f"database in {DATABASES}" if entry.get("database", "sqlite") not in DATABASES else "",
            f"no unknown keys ({', '.join(sorted(unknown))})" if unknown else "",
        ]
        if any(problems):
            raise SystemExit(f"{path}: mutant {name!r} needs " + "; ".join(p for p in problems if p))
        names.add(name)
        mutants.append(
            Mutant(
                name=name,
                guarantee=entry.get("guarantee", ""),
                edits=edits,
                tests=list(entry["tests"]),
                database=entry.get("database", "sqlite"),
                pending=entry.get("pending", ""),
            )
        )
    return mutants


def checkout_files() -> list[str]:
    """The working tree's files (tracked and new, not ignored): what the scratch copies hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def make_copy(target: Path, files: list[str]) -> Path:
    if target.exists():
        shutil.rmtree(target)
    for name in files:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)
    (target / "var" / "logs").mkdir(parents=True, exist_ok=True)  # as in a checkout the tests have run in
    return target


def check_originals(mutants: list[Mutant], copy: Path) -> list[str]:
    """Each original text must occur exactly once in its file: else the list has rotted."""
    problems = []
    for mutant in mutants:
        for edit in mutant.edits:
            path = copy / edit.file
            if not path.exists():
                problems.append(f"{mutant.name}: {edit.file} does not exist")
                continue
            found = path.read_text().count(edit.original)
            if found != 1:
                problems.append(f"{mutant.name}: the original text is in {edit.file} {found} times, not once")
            if edit.original == edit.replacement:
                problems.append(f"{mutant.name}: the replacement is the original")
    return problems


def environment(database: str, postgres_url: str, copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_TEST_RUN", "NOTIFY_CHANNEL_PREFIX")}
    if database == "postgres":
        env["DATABASE_URL"] = postgres_url
    else:
        env["DATABASE_URL"] = f"sqlite:///{copy}/var/unused.sqlite3"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def pytest(copy: Path, tests: list[str], env: dict[str, str], timeout: float, *extra: str) -> tuple[int | None, str]:
    """Run pytest in ``copy``; (exit code or None on timeout, output)."""
    command = [str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *extra, *tests]
    (copy / "var").mkdir(exist_ok=True)
    process = subprocess.Popen(
        command,
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its servers are its children: stopped with it on a timeout
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 15)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            output, _ = process.communicate()
        return None, output.decode(errors="replace")


FAILED = re.compile(r"^FAILED (\S+)", re.MULTILINE)
ERRORS = re.compile(r"^ERROR (\S+)", re.MULTILINE)


def run_mutant(mutant: Mutant, copy: Path, postgres_url: str, timeout: float) -> Outcome:
    originals = {}
    started = time.monotonic()
    try:
        for edit in mutant.edits:
            path = copy / edit.file
            originals.setdefault(path, path.read_text())
            path.write_text(path.read_text().replace(edit.original, edit.replacement, 1))
        for path in originals:
            if path.suffix == ".py":
                try:
                    compile(path.read_text(), str(path), "exec")
                except SyntaxError as error:
                    return Outcome(mutant, "error", 0.0, [f"(does not compile: {error})"])
        code, output = pytest(copy, mutant.tests, environment(mutant.database, postgres_url, copy), timeout, "-x")
    finally:
        for path, text in originals.items():
            path.write_text(text)
    seconds = time.monotonic() - started
    if code is None:
        return Outcome(mutant, "killed", seconds, [f"(ran past {timeout:.0f} s)"], output)
    if code == 0:
        return Outcome(mutant, "survived", seconds, [], output)
    if code == 1 and FAILED.findall(output):
        return Outcome(mutant, "killed", seconds, FAILED.findall(output), output)
    # Failing without a failed test (an error in a fixture, a crash at start-up) proves nothing
    # about the tests: look at it.
    if ERRORS.findall(output):
        return Outcome(mutant, "error", seconds, [f"(errors, no failure: {' '.join(ERRORS.findall(output))})"], output)
    return Outcome(mutant, "error", seconds, [f"(pytest exit code {code})"], output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", dest="only", default="", help="only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true", help="only check the list: texts found once, tests collected")
    parser.add_argument("-j", dest="jobs", type=int, default=1, help="mutants run at once (scratch copies)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the tests unmutated first")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()

    mutants = [m for m in load() if args.only in m.name]
    if args.list:
        for m in mutants:
            files = ", ".join(sorted({e.file for e in m.edits}))
            pending = f"  [pending: {m.pending}]" if m.pending else ""
            print(f"{m.name} ({m.database}; {files}){pending}\n    {m.guarantee}\n    " + "\n    ".join(m.tests))
        return 0
    if not mutants:
        print("no mutant matches")
        return 2

    SCRATCH.mkdir(parents=True, exist_ok=True)
    files = checkout_files()
    jobs = 1 if args.check else max(1, args.jobs)
    copies = [make_copy(SCRATCH / f"copy-{os.getpid()}-{i}", files) for i in range(jobs)]
    try:
        return run_all(mutants, copies, args)
    finally:
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)


def run_all(mutants: list[Mutant], copies: list[Path], args: argparse.Namespace) -> int:
    first = copies[0]
    problems = check_originals(mutants, first)
    if problems:
        print("The list has rotted: fix tests/mutants/mutants.toml\n  " + "\n  ".join(problems))
        return 1
    every_test = sorted({t for m in mutants for t in m.tests})
    code, output = pytest(first, every_test, environment("sqlite", args.postgres_url, first), 120, "--collect-only")
    if code != 0:
        print(f"Some test ids of the list are not collected (pytest exit code {code}):\n{output[-3000:]}")
        return 1
    if args.check:
        print(f"{len(mutants)} mutants: every original text found once, {len(every_test)} test ids collected.")
        return 0
    if not args.no_baseline:
        for database in DATABASES:
            tests = sorted({t for m in mutants if m.database == database for t in m.tests})
            if not tests:
                continue
            print(f"baseline: {len(tests)} tests on {database}, unmutated ...", flush=True)
            env = environment(database, args.postgres_url, first)
            code, output = pytest(first, tests, env, args.timeout * 3)
            if code != 0:
                print(f"The named tests fail without any mutant ({database}, exit code {code}):\n{output[-5000:]}")
                return 1

    free = list(copies)
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def one(mutant: Mutant) -> Outcome:
        with lock:
            copy = free.pop()
        try:
            outcome = run_mutant(mutant, copy, args.postgres_url, args.timeout)
        finally:
            with lock:
                free.append(copy)
        by = ", ".join(outcome.by)
        print(f"{outcome.status:9} {outcome.seconds:6.1f} s  {mutant.name}  {by}", flush=True)
        return outcome

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(copies)) as pool:
        outcomes = list(pool.map(one, mutants))

    bad = [o for o in outcomes if o.status != "killed"]
    print(f"\n{len(outcomes) - len(bad)} of {len(outcomes)} mutants killed in {time.monotonic() - started:.0f} s.")
    for outcome in bad:
        pending = f" [pending: {outcome.mutant.pending}]" if outcome.mutant.pending else ""
        print(f"\n{outcome.status.upper()}: {outcome.mutant.name}{pending}\n  guarantee: {outcome.mutant.guarantee}")
        print("  tests: " + " ".join(outcome.mutant.tests))
        if outcome.status == "error":
            print(outcome.output[-3000:])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
