"""Presence in the demo's chat (docs/topics.md#presence): who is online, and who joins and leaves, live."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser.conftest import ASYNC_UNSAFE, wait_until
from tests.browser.test_chat import open_chat
from tests.server import Server

# PRESENCE_TTL of this test's server: a closed tab's user is gone within it and a sweep.
TTL = 1.0
SWEEP = 0.25


def online(page: Any) -> list[str]:
    return page.eval_on_selector_all("#online li", "items => items.map(i => i.textContent)")


def lines(page: Any) -> list[str]:
    return page.eval_on_selector_all("#messages .chat-presence", "items => items.map(i => i.textContent)")


@pytest.mark.browser
def test_the_chat_shows_who_is_online_and_who_joins_and_leaves_live(browser, make_user):
    server = Server(env={ASYNC_UNSAFE: "", "NOTIFY_PRESENCE_TTL": str(TTL)}).start()
    try:
        alice, bob = make_user("alice"), make_user("bob")
        room = "design"  # shown in the screenshot; each test starts with an empty database
        page_a = open_chat(browser.context(alice), server.url, room)
        wait_until(lambda: online(page_a) == ["alice"])
        page_b = open_chat(browser.context(bob), server.url, room)
        wait_until(lambda: online(page_a) == online(page_b) == ["alice", "bob"])
        page_a.locator("#messages .chat-presence", has_text="bob joined").wait_for(timeout=5000)
        assert page_a.inner_text("#online-count") == "2"

        page_b.close()  # the browser ends its held poll
        closed = time.monotonic()
        page_a.locator("#messages .chat-presence", has_text="bob left").wait_for(timeout=10_000)
        # PRESENCE_TTL after the poll ended, a sweep, and the answer's way to the page.
        assert time.monotonic() - closed < TTL + SWEEP + 1.5
        assert online(page_a) == ["alice"]
        assert lines(page_a).count("bob joined") == 1 and lines(page_a).count("bob left") == 1
        browser.document(page_a, "chat-presence")
    finally:
        server.stop()
