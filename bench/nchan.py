"""Nchan in the benchmark: Debian's nginx with libnginx-mod-nchan, the long-poll server notify is measured against.

    .venv/bin/python bench/nchan.py --install   # install it (Debian packages, as root) if it is missing

bench/run.py's ``nchan`` variant runs this server (``NchanServer``) beside notify's,
with the same load generator (bench/loadgen.py ``--mode nchan``), the same N users
and the same phases. One nginx worker (to compare with one uvicorn worker), on
loopback only, its config generated into var/:

- ``GET /sub/user/<id>``: a long-poll subscriber on two channels at once (Nchan's
  multiplexing): the user's own, ``user-<id>``, and ``broadcast``. Nchan's cursor is
  the answer's ``Last-Modified`` and ``Etag``, which the client sends back as
  ``If-Modified-Since`` and ``If-None-Match`` (as Nchan's own JavaScript client does).
  A poll is held until a message comes (see below); with a timeout, a poll with
  nothing new is answered ``408`` and the client asks again with the cursor it had.
- ``GET /catchup/user/<id>``: the same, answered ``408`` after 1 s: the catch-up
  after a run reads what a client had not read yet until it gets one.
- ``POST /pub/user/<id>``, ``POST /pub/broadcast``: the publisher (loopback only).
  The sender posts the JSON a notify client receives for one notification
  (``Notification.as_dict()``'s keys, with an id of the sender's own), so the loss
  and duplicate accounting is the same as notify's.
- ``GET /nchan_status``: ``nchan_stub_status``, whose ``subscribers`` are the held polls.

Messages are kept in Nchan's memory store, 100 a channel for 10 minutes (Nchan's
default is 10 a channel): what a slow client has not read is still there for it, as
notify's table keeps it.

Why no timeout: Nchan 1.3.6 (Debian 12) loses messages on a multiplexed long poll
once polls of that channel pair end without a message, by Nchan's 408 or by the client
going away. Its log then says "tried adding WAITING chanhead m/ /user-N /broadcast to
chanhead_gc. why?", and later messages on that user's channel no longer reach the next
polls from the same cursor. Reproduced with curl: a poll answered 408, a publish, then
polls from the cursor answered 408 for as long as one tries (50 s), while a single,
unmultiplexed channel delivers. At N = 1,000, with Nchan's 408 after 25 s, 271 and 277
of 7,000 notifications were lost in two runs and the broadcast never reached 99 %; with
the clients abandoning their polls after 8 s, 301 (after 25 s, once each in a run:
none). So by default polls are held until a message comes (``nchan_subscriber_timeout
0``) and Nchan's clients, unlike notify's, do not ask again every 25 s; bench/run.py's
``--nchan-timeout server`` (Nchan's 408) or ``client`` (the clients abandon their polls)
runs the stock ways.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import ROOT, Sample, as_child, children_of, free_port, sample  # noqa: E402 - bench/ on the path

PACKAGE = "libnginx-mod-nchan"
MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
# nginx's own log levels that tell of a problem (a notice, such as a signal received, does not).
PROBLEM = re.compile(r"\[(?:warn|error|crit|alert|emerg)\]")
STATUS_PATH = "/nchan_status"


# --- installing it ----------------------------------------------------------------------


def missing() -> str | None:
    """Why Nchan cannot run here, or None."""
    if shutil.which("nginx") is None:
        return f"nginx is not installed (Debian: apt-get install nginx-light {PACKAGE})"
    if not MODULE.exists():
        return f"{PACKAGE} is not installed ({MODULE} is missing)"
    return None


def ensure_installed(say: Any = print) -> str | None:
    """Install nginx and libnginx-mod-nchan from Debian's packages if missing (as root, with
    apt-get); None once Nchan can run, else why not, saying what to do."""
    reason = missing()
    if reason is None:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (
            f"{reason}, and this user cannot apt-get it: run `make bench-deps` as root "
            f"(apt-get install nginx-light {PACKAGE})"
        )
    packages = [PACKAGE] if shutil.which("nginx") else ["nginx-light", PACKAGE]
    say(f"Installing {' '.join(packages)} (Debian packages) for the nchan variant")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, timeout=600, check=False)

    done = apt("install", "-y", "-qq", *packages)
    if done.returncode != 0:  # a machine whose package lists were never fetched
        apt("update", "-qq")
        done = apt("install", "-y", "-qq", *packages)
    if done.returncode != 0:
        return f"{reason}; `apt-get install {' '.join(packages)}` failed: {done.stderr.strip()[-400:]}"
    return missing()


# --- the server --------------------------------------------------------------------------


def config(port: int, directory: Path, error_log: Path, timeout: float, open_files: int) -> str:
    """nginx.conf for one run: one worker, loopback only, room for ``open_files`` connections.
    ``timeout``: Nchan answers a held poll 408 after that long; 0, never."""
    seconds = f"{max(1, round(timeout))}s" if timeout else "0"
    subscriber = """
            nchan_subscriber longpoll;
            # The user's channel and the broadcast channel in one poll (multiplexed).
            nchan_channel_id user-$1 broadcast;
            nchan_subscriber_first_message oldest;"""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# Generated by bench/nchan.py for one run of bench/run.py; removed after it.
load_module {MODULE};
worker_processes 1;
worker_rlimit_nofile {open_files};
pid {directory / "nginx.pid"};
error_log {error_log} notice;

events {{
    # Every held poll is a connection; a few left for the listening socket and the log.
    worker_connections {open_files - 100};
}}

http {{
    access_log off;
{temp}
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    nchan_shared_memory_size 256m;
    nchan_message_buffer_length 100;
    nchan_message_timeout 10m;

    server {{
        listen 127.0.0.1:{port} backlog=4096;

        location ~ ^/sub/user/(\\d+)$ {{{subscriber}
            nchan_subscriber_timeout {seconds};
        }}
        location ~ ^/catchup/user/(\\d+)$ {{{subscriber}
            nchan_subscriber_timeout 1s;
        }}
        location ~ ^/pub/user/(\\d+)$ {{
            allow 127.0.0.1;
            deny all;
            nchan_publisher http;
            nchan_channel_id user-$1;
        }}
        location = /pub/broadcast {{
            allow 127.0.0.1;
            deny all;
            nchan_publisher http;
            nchan_channel_id broadcast;
        }}
        location = {STATUS_PATH} {{
            allow 127.0.0.1;
            deny all;
            nchan_stub_status;
        }}
    }}
}}
"""


@dataclass
class NchanServer:
    """nginx + Nchan for one run, with the interface of stack.Server that bench/run.py uses."""

    n: int
    timeout: float
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    known_pids: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.directory = ROOT / "var" / f"nchan-{self.port}"
        self.config_path = self.directory / "nginx.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [shutil.which("nginx") or "nginx", "-c", str(self.config_path), "-g", "daemon off;"]

    def start(self, wait: float = 15.0) -> NchanServer:
        reason = missing()
        if reason is not None:
            raise RuntimeError(reason)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("")
        # The hard limit: bench/child.py raises nginx's soft limit to it, and the worker asks for it.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        open_files = hard if hard != resource.RLIM_INFINITY else 65536
        self.config_path.write_text(config(self.port, self.directory, self.log_path, self.timeout, open_files))
        self.process = subprocess.Popen(
            as_child(self.command()), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                self.status()
                self.pids()
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nginx with Nchan did not answer within {wait} s: {self.log_tail()}")

    def status(self) -> dict[str, str]:
        """nchan_stub_status, as ``{name: value}``."""
        with urllib.request.urlopen(f"{self.url}{STATUS_PATH}", timeout=5) as response:
            text = response.read().decode()
        return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)

    def held(self) -> int:
        """Subscribers Nchan holds (a poll on two multiplexed channels counts once)."""
        return int(self.status()["subscribers"])

    def pids(self) -> list[int]:
        assert self.process is not None
        pids = [self.process.pid, *children_of(self.process.pid)]
        self.known_pids.update(pids)
        return pids

    def worker_pid(self) -> int:
        return max(self.pids(), key=lambda pid: (sample([pid]).rss_kb, pid))

    def sample(self) -> Sample:
        return sample(self.pids())

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (nginx's fast shutdown), then SIGKILL for whatever of ours is still there."""
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
        shutil.rmtree(self.directory, ignore_errors=True)
        return self.process.returncode

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def log_problems(self) -> dict[str, int]:
        """nginx's log lines at warn or above, by message (digits blanked)."""
        if not self.log_path.exists():
            return {}
        problems: dict[str, int] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            if PROBLEM.search(line):
                key = re.sub(r"\d+", "N", line.split("] ", 1)[-1].strip())[:200]
                problems[key] = problems.get(key, 0) + 1
        return problems


# --- the sender ---------------------------------------------------------------------------


class Publisher:
    """Publishes to Nchan over one keep-alive connection, as an application's back end would.

    Each message is the JSON a notify client receives for one notification, with an id
    of the sender's own. A broadcast is one message on the broadcast channel: client
    ``i`` counts it as notification ``id + i`` (``data.broadcast``), so that, as with
    notify (where each user's copy has an id of its own), every user's copy is
    accounted for once.
    """

    def __init__(self, url: str) -> None:
        self.host, _, port = url.removeprefix("http://").partition(":")
        self.connection = http.client.HTTPConnection(self.host, int(port), timeout=10)
        self.next_id = 1
        self.created_at = datetime.now(UTC).isoformat()

    def body(self, nid: int, title: str, data: dict[str, Any]) -> bytes:
        notification = {
            "id": nid,
            "title": title,
            "body": "",
            "level": "info",
            "url": "",
            "data": data,
            "created_at": self.created_at,
            "read": False,
        }
        return json.dumps(notification, separators=(",", ":")).encode()

    def post(self, path: str, body: bytes) -> None:
        for attempt in (1, 2):
            try:
                self.connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = self.connection.getresponse()
                answer = response.read()
                break
            except (http.client.HTTPException, OSError):
                # nginx closed the kept-alive connection meanwhile: once more on a new one.
                self.connection.close()
                if attempt == 2:
                    raise
        if response.status not in (201, 202):
            raise RuntimeError(f"Nchan answered {response.status} to POST {path}: {answer[:200]!r}")

    def send(self, user_id: int, title: str, data: dict[str, Any]) -> int:
        """One notification to one user; its id."""
        nid, self.next_id = self.next_id, self.next_id + 1
        self.post(f"/pub/user/{user_id}", self.body(nid, title, data))
        return nid

    def broadcast(self, count: int, title: str) -> list[int]:
        """One message to every subscriber; the ids ``count`` clients count it as, by client index."""
        base, self.next_id = self.next_id, self.next_id + count
        self.post("/pub/broadcast", self.body(base, title, {"broadcast": True}))
        return list(range(base, base + count))

    def close(self) -> None:
        self.connection.close()


def warm_up(server: NchanServer) -> None:
    """One publish and one poll that reads it, on a channel no client uses (user 0), so that
    the worker's pools exist before 'RSS before'."""
    publisher = Publisher(server.url)
    try:
        publisher.post("/pub/user/0", b'{"warm-up":true}')
    finally:
        publisher.close()
    with urllib.request.urlopen(f"{server.url}/sub/user/0", timeout=10) as response:
        if response.status != 200 or b"warm-up" not in response.read():
            raise RuntimeError(f"Nchan's warm-up poll was answered {response.status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help=f"install nginx and {PACKAGE} if missing")
    args = parser.parse_args()
    reason = ensure_installed() if args.install else missing()
    if reason is not None:
        print(f"Nchan cannot run here: {reason}", file=sys.stderr)
        return 1
    done = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    print(f"Nchan ready: {MODULE} ({done.stderr.strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
