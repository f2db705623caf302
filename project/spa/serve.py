"""The example single-page app's own server: another origin than Django's.

    .venv/bin/python project/spa/serve.py        # http://127.0.0.1:8001/

It serves this directory's page, script and style, and the notify client where
``npm install`` would put it: ``/node_modules/django-notify-longpoll/``, with only the
files the package ships (package.json's ``files``), which index.html's import map
points at. A project with a bundler serves its bundle instead; nothing here is
Django's. tests/browser/test_spa.py runs ``Handler`` on a port of its own.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the repository: the npm package django-notify-longpoll
PACKAGE = "/node_modules/django-notify-longpoll/"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".json": "application/json"}


def shipped() -> list[Path]:
    """What ``npm pack`` puts in the package: package.json's ``files`` (directories and files), and package.json."""
    package = json.loads((ROOT / "package.json").read_text())
    return [(ROOT / entry).resolve() for entry in [*package["files"], "package.json"]]


def resolve(url: str) -> Path | None:
    """The file a URL path names, or None if it is not one this server serves."""
    path = unquote(urlsplit(url).path)
    if path.startswith(PACKAGE):
        file = (ROOT / path.removeprefix(PACKAGE)).resolve()
        allowed = any(file == entry or file.is_relative_to(entry) for entry in shipped())
    else:
        file = (HERE / (path.lstrip("/") or "index.html")).resolve()
        allowed = file.parent == HERE and file.suffix in (".html", ".js", ".css")
    return file if allowed and file.suffix in TYPES and file.is_file() else None


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        file = resolve(self.path)
        body = file.read_bytes() if file else b"Not found\n"
        self.send_response(200 if file else 404)
        self.send_header("Content-Type", TYPES[file.suffix] if file else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if getattr(self.server, "verbose", False):  # main() says what it serves; a test's server does not
            super().log_message(format, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    options = parser.parse_args()
    server = ThreadingHTTPServer((options.host, options.port), Handler)
    server.verbose = True  # type: ignore[attr-defined]
    print(f"The example single-page app: http://{options.host}:{options.port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
