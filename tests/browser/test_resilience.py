"""What a page lives through: a server restart, a proxy that cuts polls, a reload, a lost session."""

from __future__ import annotations

import time
from importlib import import_module
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import Client

import notify
from notify.auth.revocation import announce
from tests.browser.conftest import PollWatch, own_server
from tests.browser.proxy import CuttingProxy

pytestmark = pytest.mark.browser


def open_inbox(context, base_url: str):  # type: ignore[no-untyped-def]
    page = context.new_page()
    page.goto(f"{base_url}/inbox/")
    page.wait_for_selector('#connection[data-status="connected"]')
    return page


def wait_for_items(page, notifications, timeout: float) -> None:  # type: ignore[no-untyped-def]
    for n in notifications:
        page.locator(f'#inbox .inbox-item[data-id="{n.pk}"]').wait_for(timeout=timeout)


def assert_each_once(page, notifications) -> None:  # type: ignore[no-untyped-def]
    ids = [n.pk for n in notifications]
    announced = page.evaluate("window.__notify.messages")
    assert sorted(announced) == sorted(set(announced)), f"announced twice: {announced}"
    assert set(ids) <= set(announced)
    for pk in ids:
        assert page.locator(f'#inbox .inbox-item[data-id="{pk}"]').count() == 1


def test_notifications_sent_while_the_server_is_down_arrive_once_after_restart(browser, user):
    live = own_server().start()
    try:
        page = open_inbox(browser.context(user), live.url)
        # Retry within a second or two (the default allows up to 30 s between tries).
        page.evaluate("Notify.client.options.backoffMax = 2000")
        (before,) = notify.send(user, "before the restart")
        wait_for_items(page, [before], timeout=1000)

        live.stop()
        page.wait_for_selector('#connection[data-status="reconnecting"]', timeout=3000)
        missed = [n for title in ("while down 1", "while down 2") for n in notify.send(user, title)]
        live.start()
        wait_for_items(page, missed, timeout=5000)
        (after,) = notify.send(user, "after the restart")
        wait_for_items(page, [after], timeout=1000)

        assert_each_once(page, [before, *missed, after])
        assert page.evaluate("window.__notify.messages") == [before.pk, *(n.pk for n in missed), after.pk]
    finally:
        live.stop()


def test_reload_resumes_from_the_stored_cursor(server, browser, user):
    context = browser.context(user)
    page = open_inbox(context, server.url)
    (seen,) = notify.send(user, "seen before closing")
    wait_for_items(page, [seen], timeout=1000)
    page.close()

    (missed,) = notify.send(user, "sent while no page was open")
    page = open_inbox(context, server.url)
    page.wait_for_function(f"window.__notify.messages.includes({missed.pk})", timeout=2000)

    # The missed one is announced as new, the one seen before is not announced again.
    assert page.evaluate("window.__notify.messages") == [missed.pk]
    assert_each_once(page, [missed])


def asked_timeout(request) -> float:  # type: ignore[no-untyped-def]
    return float(parse_qs(urlsplit(request.url).query).get("timeout", ["nan"])[0])


def test_polls_cut_early_by_a_proxy_lower_the_timeout_and_keep_delivering(server, browser, user):
    proxy = CuttingProxy(upstream_port=server.port, cut_after=2.0).start()
    try:
        context = browser.context(user)
        polls = PollWatch(context)
        page = open_inbox(context, proxy.url)
        (during,) = notify.send(user, "while polls are cut")  # answers the held poll at once
        wait_for_items(page, [during], timeout=2000)

        # Two polls cut at 2 s (one 504, one dropped), then polls short enough to pass.
        page.wait_for_function("Notify.client.requestedTimeout < 2", timeout=12000)
        assert proxy.cuts == ["504", "drop"]
        lowered = page.evaluate("Notify.client.requestedTimeout")
        assert 1.0 <= lowered <= 1.6
        wait_until_answered = 4000
        while not any(status == 200 and asked_timeout(request) == lowered for request, status in polls.answers):
            page.wait_for_timeout(100)  # a held poll at the lowered timeout, answered empty before the cut
            wait_until_answered -= 100
            assert wait_until_answered > 0, f"no poll at {lowered} s answered: {polls.answers}"
        (after,) = notify.send(user, "behind the proxy")
        wait_for_items(page, [after], timeout=2000)

        assert proxy.cuts == ["504", "drop"], "polls at the lowered timeout must not be cut"
        assert asked_timeout(polls.requests[-1]) == lowered
        assert page.locator("#connection").get_attribute("data-status") == "connected"
        assert_each_once(page, [during, after])
    finally:
        proxy.stop()


@pytest.mark.parametrize("how", ["session-deleted", "logged-out-elsewhere"])
def test_a_lost_session_fires_unauthorized_and_stops_polling_in_every_tab(server, browser, user, how):
    context = browser.context(user)
    polls = PollWatch(context)
    tabs = [open_inbox(context, server.url) for _ in range(2)]
    (cookie,) = [c for c in context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME]

    if how == "session-deleted":  # cleared on the server by the project's own code
        import_module(settings.SESSION_ENGINE).SessionStore(cookie["value"]).delete()
        # Which the project announces, as docs/delivery.md ("Trust") asks of code that
        # ends sessions without logout(): the worker trusts the session until then.
        announce(user.pk)
    else:  # logged out in another window of the same browser: that ends the held poll itself
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = cookie["value"]
        assert client.post("/logout/").status_code == 302

    for tab in tabs:
        tab.wait_for_function("window.__notify.unauthorized === 1", timeout=3000)
        assert tab.locator("#signed-out").is_visible()
        assert tab.evaluate("Notify.client.status") == "stopped"
    assert [status for _, status in polls.answers][-1] == 401
    count = len(polls.requests)
    tabs[0].wait_for_timeout(1500)
    assert len(polls.requests) == count, "polling went on after 401"


def test_offline_waits_for_the_network_then_catches_up(server, browser, user):
    context = browser.context(user)
    page = open_inbox(context, server.url)

    context.set_offline(True)
    page.wait_for_selector('#connection[data-status="offline"]', timeout=2000)
    (missed,) = notify.send(user, "sent while offline")
    page.wait_for_timeout(300)
    assert page.locator(f'#inbox .inbox-item[data-id="{missed.pk}"]').count() == 0
    context.set_offline(False)

    wait_for_items(page, [missed], timeout=1500)
    assert_each_once(page, [missed])


def test_retry_after_is_honoured(server, browser, user):
    context = browser.context(user)
    refused: list[float] = []
    retried: list[float] = []

    def busy_once(route) -> None:  # type: ignore[no-untyped-def]
        if not refused:
            refused.append(time.monotonic())
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body='{"error": "unavailable", "detail": "busy"}',
            )
        else:
            retried.append(time.monotonic())
            route.continue_()

    context.route(lambda url: "/notify/poll" in url and "after=" in url, busy_once)
    page = context.new_page()
    page.goto(f"{server.url}/inbox/")
    page.wait_for_selector('#connection[data-status="reconnecting"]', timeout=2000)
    page.wait_for_selector('#connection[data-status="connected"]', timeout=4000)
    (sent,) = notify.send(user, "after the wait")
    wait_for_items(page, [sent], timeout=1000)

    assert 1.0 <= retried[0] - refused[0] < 3.0


def test_an_unusable_stored_cursor_is_dropped(server, browser, user):
    key = f"notify:{user.pk}:cursor"
    context = browser.context(user, init_script=f"localStorage.setItem({key!r}, 'not-a-cursor');")
    polls = PollWatch(context)
    page = open_inbox(context, server.url)
    (sent,) = notify.send(user, "after a fresh start")

    wait_for_items(page, [sent], timeout=2000)
    assert (polls.answers[1][1], polls.answers[1][0].url.count("after=not-a-cursor")) == (400, 1)
    assert page.evaluate(f"localStorage.getItem({key!r})") not in (None, "not-a-cursor")


def test_the_page_keeps_delivering_behind_a_real_nginx_that_cuts_polls_at_2_s(server, browser, user):
    """deploy/nginx.conf with its poll read timeout cut to 2 s, as a stricter proxy
    further out would: the page learns to ask for shorter polls and loses nothing."""
    import os
    import shutil

    from tests.nginx import Nginx

    if shutil.which("nginx") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed: `make test` installs it (apt-get install nginx-light)")
        pytest.skip("nginx is not installed (make test installs it when run as root)")
    proxy = Nginx([f"127.0.0.1:{server.port}"], poll_read_timeout="2s").start()
    try:
        page = open_inbox(browser.context(user), proxy.url)
        page.wait_for_function("Notify.client.requestedTimeout < 2", timeout=15000)
        sent = []
        for i in range(3):  # further apart than the cut: each comes in a poll of its own
            sent += notify.send(user, f"behind nginx {i}")
            page.wait_for_timeout(2500)
        wait_for_items(page, sent, timeout=3000)

        assert_each_once(page, sent)
        assert page.locator("#connection").get_attribute("data-status") == "connected"
        assert page.evaluate("Notify.client.requestedTimeout") < 2
    finally:
        proxy.stop()
