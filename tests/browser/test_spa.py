"""The example single-page app (project/spa/) on another origin than Django's, in Chromium.

Two servers, two origins: uvicorn serves Django with project/spa/settings.py (django-cors-headers
as its users configure it: CORS_ALLOWED_ORIGINS, CorsMiddleware in MIDDLEWARE), and
project/spa/serve.py's handler serves the app and the client's modules on another port. The app
gets a bearer token in its address's fragment, as the example documents, and follows the inbox
and room:lobby through the ES module: polls (router-served, with POLL_MIDDLEWARE's CORS headers),
preflights, publish and read marks (Django's own middleware) all cross origins.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

import notify
from notify.models import TopicMessage
from project.spa.serve import Handler
from tests.browser.conftest import ASYNC_UNSAFE, Browser, wait_until
from tests.server import Server

pytestmark = pytest.mark.browser

ROOM = "room:lobby"  # the room the example follows


@pytest.fixture
def spa() -> Iterator[str]:
    """project/spa/ served on a port of its own: the app's origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def django_for(spa: str) -> Iterator[Callable[[str], Server]]:
    """Starts uvicorn with a settings module that allows the app's origin (SPA_ORIGINS)."""
    servers: list[Server] = []

    def start(settings_module: str) -> Server:
        env = {ASYNC_UNSAFE: "", "DJANGO_SETTINGS_MODULE": settings_module, "SPA_ORIGINS": spa}
        servers.append(Server(env=env).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def open_app(browser: Browser, spa: str, django: Server, token: str, user: Any) -> Any:
    page = browser.context(None).new_page()
    page.goto(f"{spa}/#token={token}&user={user.pk}&api={django.url}")
    return page


def test_the_spa_follows_the_inbox_and_a_topic_across_origins(
    browser: Browser, spa: str, django_for: Callable[[str], Server], make_user: Any, token_for: Any
) -> None:
    from playwright.sync_api import expect

    user = make_user()
    django = django_for("project.spa.settings")
    page = open_app(browser, spa, django, token_for(user), user)

    expect(page.locator("#status")).to_have_text("connected")
    assert page.url == f"{spa}/", "the token is out of the address bar"
    assert page.evaluate("location.origin") != django.url
    django.wait_for_held_polls(1, user.pk)  # the inbox and the room, in one held poll

    notify.send(user, "across origins", "sent by Django")
    expect(page.locator("#inbox li")).to_have_text(["across originssent by Django"])
    expect(page.locator("#inbox li.unread")).to_have_count(1)
    expect(page.locator("#unread")).to_have_text("1")

    # Posted by the app (a preflighted POST with the bearer token, no CSRF token), and by the
    # server: both come back through the poll.
    page.fill("#say input", "hello from the app")
    page.click("#say button")
    expect(page.locator("#room li")).to_have_text([f"hello from the app{user.username}"])
    notify.publish(ROOM, {"text": "hello from the server"})
    expect(page.locator("#room li")).to_have_text([f"hello from the app{user.username}", "hello from the server"])

    # A read mark (keepalive, cross-origin) reaches the server and comes back as the count.
    page.click("#mark-all-read")
    expect(page.locator("#unread")).to_have_text("0")
    expect(page.locator("#inbox li.unread")).to_have_count(0)
    assert not user.notifications.filter(read_at=None).exists()
    expect(page.locator("#problem")).to_be_hidden()
    assert not [line for line in browser.console if "error" in line], browser.console


def test_without_cors_headers_on_router_served_polls_the_spa_reads_nothing(
    browser: Browser, spa: str, django_for: Callable[[str], Server], make_user: Any, token_for: Any
) -> None:
    """POLL_MIDDLEWARE = []: the preflights and POSTs still get CorsMiddleware's headers from
    Django, the polls served by LongPollRouter do not, and Chromium hides their answers."""
    from playwright.sync_api import expect

    user = make_user()
    django = django_for("tests.settings_spa_without_poll_cors")
    page = open_app(browser, spa, django, token_for(user), user)

    polls: list[Any] = []
    page.on("request", lambda request: polls.append(request) if "/notify/poll" in request.url else None)
    expect(page.locator("#status")).to_have_text("reconnecting")
    notify.send(user, "never read")
    after_send = len(polls)  # Playwright reports events only during its calls: none came since
    # A poll started after the send fails: the server answered it, the browser hid the answer.
    page.wait_for_event("requestfailed", lambda request: request in polls[after_send:], timeout=15_000)

    page.fill("#say input", "posted, never heard")
    page.click("#say button")
    wait_until(lambda: TopicMessage.objects.filter(topic__name=ROOM).exists())
    expect(page.locator("#say input")).to_have_value("")  # publish() resolved: its answer was readable
    expect(page.locator("#inbox li")).to_have_count(0)
    expect(page.locator("#room li")).to_have_count(0)
    expect(page.locator("#status")).to_have_text("reconnecting")
    assert any(re.search(r"CORS policy", line) for line in browser.console), browser.console
