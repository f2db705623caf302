"""Real-browser tests: Playwright drives Debian's Chromium against a real uvicorn.

Nothing here downloads a browser: Chromium is /usr/bin/chromium (``make browser-deps``),
Playwright only drives it. Without Chromium (or Playwright) the tests are skipped
with the reason, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.server import ROOT, Server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "var" / "artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Records every notify:message (and notify:unauthorized) a page sees, before its scripts run.
RECORDER = """
window.__notify = {messages: [], unauthorized: 0, statuses: []};
document.addEventListener("notify:message", (e) => window.__notify.messages.push(e.detail.id));
document.addEventListener("notify:unauthorized", () => { window.__notify.unauthorized += 1; });
document.addEventListener("notify:status", (e) => window.__notify.statuses.push(e.detail));
"""


def _unavailable() -> str | None:
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM}: run `make browser-deps` (apt-get install chromium)."
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed: pip install -r requirements-dev.txt."
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    setattr(item, f"report_{report.when}", report)  # read by the `browser` fixture's teardown
    return report


@pytest.fixture(scope="package")
def chromium(server: Server) -> Iterator[Any]:
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} CI must run the browser tests.", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API marks its event loop as running in this thread between
    # its calls (playwright/_impl/_greenlets.py), so Django takes the tests' plain
    # synchronous ORM calls (and pytest-django's flush) for calls from async code.
    # They are not: allow them while Playwright runs. The session's uvicorn (started
    # above, before this) and own_server() keep Django's check.
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        # Package scope: the driver stops before the async tests of other modules run.
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


def own_server(**options: Any) -> Server:
    """A uvicorn of the test's own (to stop and restart), with Django's async-safety check on."""
    return Server(env={ASYNC_UNSAFE: ""}, **options)


class Browser:
    """Contexts (one per browser profile) logged in as test users; screenshots on failure."""

    def __init__(self, chromium: Any, name: str) -> None:
        self.chromium = chromium
        self.name = name
        self.contexts: list[Any] = []
        self.console: list[str] = []
        self.pages = 0

    def context(self, user: Any, *, init_script: str = "", **options: Any) -> Any:
        """A browser profile logged in as ``user``, or logged out with ``user=None``."""
        from django.test import Client

        context = self.chromium.new_context(viewport={"width": 900, "height": 700}, **options)
        context.set_default_timeout(10_000)
        if user is not None:
            client = Client()
            client.force_login(user)
            session = client.cookies[settings.SESSION_COOKIE_NAME].value
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": session, "domain": "127.0.0.1", "path": "/"}]
            )
        context.add_init_script(RECORDER + init_script)
        context.on("page", self._watch)
        self.contexts.append(context)
        return context

    def _watch(self, page: Any) -> None:
        self.pages += 1
        index = self.pages
        page.on("console", lambda message: self.console.append(f"[page {index}] {message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"[page {index}] pageerror: {error}"))

    def screenshot(self, page: Any, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    def document(self, page: Any, name: str) -> Path:
        """A screenshot for the docs: kept as an artifact, and written to docs/screenshots/
        only with UPDATE_SCREENSHOTS=1, so that a test run leaves the tree clean."""
        path = self.screenshot(page, name)
        if os.environ.get("UPDATE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
        return path

    def close(self, failed: bool) -> None:
        from playwright.sync_api import Error

        for number, context in enumerate(self.contexts):
            if failed:
                for index, page in enumerate(context.pages):
                    try:
                        self.screenshot(page, f"{self.name}-failed-{number}-{index}")
                    except Error as error:  # the page may be what failed
                        self.console.append(f"no screenshot of page {index}: {error}")
            context.close()


@pytest.fixture
def browser(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Browser]:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    opened = Browser(chromium, name)
    yield opened
    report = getattr(request.node, "report_call", None)
    failed = report is None or report.failed
    opened.close(failed)
    if failed and opened.console:
        print("Browser console:\n" + "\n".join(opened.console[-80:]))


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user()


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` (e.g. a database check) until it is truthy; its value, or AssertionError."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        time.sleep(interval)


class PollWatch:
    """The /notify/poll requests of a browser context: how many are in flight, and the most at once."""

    def __init__(self, context: Any) -> None:
        self.requests: list[Any] = []
        self.in_flight: set[Any] = set()
        self.most_in_flight = 0
        self.answers: list[tuple[Any, int]] = []  # (request, status), as responses arrive
        context.on("request", self._started)
        context.on(
            "response",
            lambda response: (
                self.answers.append((response.request, response.status)) if "/notify/poll" in response.url else None
            ),
        )
        context.on("requestfinished", self._ended)
        context.on("requestfailed", self._ended)

    def _started(self, request: Any) -> None:
        if "/notify/poll" in request.url:
            self.requests.append(request)
            self.in_flight.add(request)
            self.most_in_flight = max(self.most_in_flight, len(self.in_flight))

    def _ended(self, request: Any) -> None:
        self.in_flight.discard(request)

    def forget(self, page: Any) -> None:
        """A closed page's poll ends with it, whether or not Playwright reports it."""
        self.in_flight = {r for r in self.in_flight if r.frame.page != page}

    def reset(self) -> None:
        self.requests = []
        self.answers = []
        self.most_in_flight = len(self.in_flight)

    def pages(self) -> set[Any]:
        return {r.frame.page for r in self.requests}
