"""What the status line says is true: a reload of the polling tab is not an outage."""

from __future__ import annotations

import pytest

import notify
from tests.browser.conftest import PollWatch
from tests.browser.test_tabs import WITHOUT_WEB_LOCKS, leader_of, open_tabs, shows

pytestmark = pytest.mark.browser


def held_polls(polls: PollWatch, page) -> list:  # type: ignore[no-untyped-def]
    """The held (timeout > 0) polls of ``page`` in flight now."""
    return [r for r in polls.in_flight if r.frame.page == page and "timeout=0" not in r.url and "after=" in r.url]


@pytest.mark.parametrize("election", ["web-locks", "broadcast-channel"])
def test_reloading_the_polling_tab_leaves_every_tab_live(server, browser, user, election):
    """Issue 17: the reloaded tab's aborted poll was broadcast as a network error, and the tab
    that took over said "reconnecting…" until its first held poll was answered, up to 25 s."""
    context = browser.context(user, init_script=WITHOUT_WEB_LOCKS if election == "broadcast-channel" else "")
    polls = PollWatch(context)
    tabs = open_tabs(context, f"{server.url}/inbox/")
    leader = leader_of(tabs)
    (other,) = [tab for tab in tabs if tab is not leader]
    other.evaluate("window.__notify.statuses = []")

    leader.reload()
    leader.wait_for_selector('#connection[data-status="connected"]', timeout=5000)
    other.wait_for_function("Notify.client.leader", timeout=4000)
    # The new polling tab holds its poll: the moment the old code said "reconnecting" for.
    other.wait_for_function("Notify.client.status === 'connected'", timeout=2000)
    polls.forget(leader)
    deadline = 40
    while not held_polls(polls, other):
        other.wait_for_timeout(100)
        deadline -= 1
        assert deadline, "the new polling tab holds no poll"

    assert other.evaluate("window.__notify.statuses").count("reconnecting") == 0
    assert leader.evaluate("window.__notify.statuses").count("reconnecting") == 0
    for tab in (leader, other):
        assert tab.locator("#connection").get_attribute("data-status") == "connected"
    (sent,) = notify.send(user, "after the reload")
    for tab in (leader, other):
        shows(tab, sent, timeout=2000)
