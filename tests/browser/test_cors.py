"""A page on another origin polls with a bearer token, as a single-page app on its own domain does.

The poll server runs django-cors-headers (tests/settings_cors.py). Chromium sends the preflight
(OPTIONS, for the Authorization header) to Django's own handler, and the poll itself to
LongPollRouter: without CORS headers on that answer the browser hands the page nothing but a
TypeError, whatever the server said.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import notify
from tests.browser.conftest import ASYNC_UNSAFE, Browser
from tests.server import Server

pytestmark = pytest.mark.browser

PAGE = b"<!doctype html><title>another origin</title><p>A page that polls another origin.</p>"


class PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass


@pytest.fixture
def other_origin() -> Iterator[str]:
    """A second HTTP server on 127.0.0.1, on a port of its own: another origin than the poll server's."""
    page_server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=page_server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{page_server.server_address[1]}"
    page_server.shutdown()
    page_server.server_close()
    thread.join(5)


@pytest.fixture
def cors_server() -> Iterator[Server]:
    server = Server(env={ASYNC_UNSAFE: "", "DJANGO_SETTINGS_MODULE": "tests.settings_cors"}).start()
    yield server
    server.stop()


FETCH = """([url, token]) => {
    window.__answer = fetch(url, {headers: {Authorization: "Bearer " + token}})
        .then(async (response) => ({status: response.status, body: await response.json()}))
        .catch((error) => ({error: String(error)}))
        .then((answer) => { window.__result = answer; });
}"""


def fetch(page: Any, url: str, token: str) -> dict[str, Any]:
    page.evaluate(FETCH, [url, token])
    page.wait_for_function("window.__result !== undefined", timeout=15_000)
    result = page.evaluate("window.__result")
    page.evaluate("window.__result = undefined")
    return result


def test_a_page_on_another_origin_polls_with_a_bearer_token(
    browser: Browser, cors_server: Server, other_origin: str, make_user: Any, token_for: Any
) -> None:
    user = make_user()
    token = token_for(user)
    page = browser.context(None).new_page()
    page.goto(other_origin)
    poll = f"{cors_server.url}/notify/poll"

    first = fetch(page, poll, token)
    assert first == {"status": 200, "body": {"cursor": "0", "notifications": [], "unread_count": 0}}, first

    # A held poll, answered when a notification comes: through the router and its middleware.
    page.evaluate(FETCH, [f"{poll}?after=0&timeout=20", token])
    cors_server.wait_for_held_polls(1, user.pk)
    notify.send(user, "across origins")
    page.wait_for_function("window.__result !== undefined", timeout=15_000)
    held = page.evaluate("window.__result")
    assert held["status"] == 200, held
    assert [n["title"] for n in held["body"]["notifications"]] == ["across origins"]
