"""One long poll per browser: tabs of one user share it, and another takes over when its tab closes."""

from __future__ import annotations

import pytest

import notify
from tests.browser.conftest import PollWatch

pytestmark = pytest.mark.browser

# Web Locks hidden: notify.js falls back to an election over BroadcastChannel.
WITHOUT_WEB_LOCKS = "delete Navigator.prototype.locks;"


def open_tabs(context, url: str, count: int = 2) -> list:  # type: ignore[no-untyped-def]
    tabs = []
    for _ in range(count):
        tab = context.new_page()
        tab.goto(url)
        tab.wait_for_selector('#connection[data-status="connected"]')
        tabs.append(tab)
    return tabs


def leader_of(tabs: list):  # type: ignore[no-untyped-def]
    leaders = [tab for tab in tabs if tab.evaluate("Notify.client.leader")]
    assert len(leaders) == 1, f"{len(leaders)} tabs poll"
    return leaders[0]


def shows(tab, notification, timeout: float = 1000) -> None:  # type: ignore[no-untyped-def]
    tab.locator(f'#inbox .inbox-item[data-id="{notification.pk}"]').wait_for(timeout=timeout)


@pytest.mark.parametrize("election", ["web-locks", "broadcast-channel"])
def test_tabs_share_one_poll_and_another_takes_over_when_it_closes(server, browser, user, election):
    context = browser.context(user, init_script=WITHOUT_WEB_LOCKS if election == "broadcast-channel" else "")
    polls = PollWatch(context)
    tabs = open_tabs(context, f"{server.url}/inbox/")
    tabs[0].wait_for_timeout(300)  # time for a second poll to start, were there one

    assert len(polls.in_flight) == 1
    assert polls.most_in_flight == 1
    assert tabs[0].evaluate("'locks' in navigator") == (election == "web-locks")
    leader = leader_of(tabs)
    assert polls.pages() == {leader}

    (first,) = notify.send(user, "to both tabs")
    for tab in tabs:
        shows(tab, first)

    follower = next(tab for tab in tabs if tab is not leader)
    polls.reset()
    leader.close()
    polls.forget(leader)
    follower.wait_for_function("Notify.client.leader", timeout=4000)
    (second,) = notify.send(user, "after the takeover")
    shows(follower, second, timeout=2000)

    assert polls.pages() == {follower}
    assert polls.most_in_flight == 1
    assert follower.evaluate("window.__notify.messages") == [first.pk, second.pk]
