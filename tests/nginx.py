"""A real nginx running deploy/nginx.conf, pointed at the test's own app servers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.server import ROOT, free_port

CONFIG = ROOT / "deploy" / "nginx.conf"


def require_nginx() -> None:
    """Skip the calling test (fail it on CI) when there is no nginx to run."""
    if shutil.which("nginx") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed: `make test` installs it (apt-get install nginx-light)")
        pytest.skip("nginx is not installed (make test installs it when run as root)")


class Nginx:
    def __init__(
        self, upstreams: list[str], *, poll_read_timeout: str | None = None, client_timeouts: str | None = None
    ) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="notify-nginx-"))
        config = CONFIG.read_text()
        # The shipped config, with this test's ports and paths in place of the example's.
        config = config.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.port};")
        servers = "".join(f"server {upstream};\n        " for upstream in upstreams)
        config = re.sub(r"(upstream notify_app \{\n\s+)(server [^\n]+\n\s+)+", rf"\g<1>{servers}", config)
        config = config.replace("/run/nginx-notify.pid", str(self.dir / "nginx.pid"))
        config = config.replace("/var/log/nginx/notify-error.log", str(self.dir / "error.log"))
        config = config.replace("/tmp/nginx-notify-", str(self.dir / "temp-"))
        if poll_read_timeout is not None:  # a proxy that cuts long requests
            config = config.replace("proxy_read_timeout 75s;", f"proxy_read_timeout {poll_read_timeout};", 1)
        if client_timeouts is not None:
            # The shipped slow-client directives with a shorter value, so that a test need not
            # wait the shipped 10 s. Only directives the config has are changed: without them
            # nginx's own default (60 s) applies, and a test that expects this value fails.
            config = re.sub(
                r"^(\s*client_(?:header|body)_timeout) \S+;", rf"\g<1> {client_timeouts};", config, flags=re.MULTILINE
            )
        self.config = self.dir / "nginx.conf"
        self.config.write_text(config)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        self.process = subprocess.Popen(
            ["nginx", "-c", str(self.config), "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {self.error_log()}")

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # fast shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
