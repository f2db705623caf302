"""The admin's live dashboard in Chromium: its figures change while an announcement goes out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from notify.models import Broadcast
from notify.sending import send_broadcast
from tests.browser.conftest import ASYNC_UNSAFE
from tests.server import Server

pytestmark = pytest.mark.browser

# Every figure the page hears, recorded before its scripts run.
RECORDER = """
window.__figures = [];
document.addEventListener("notify:topic", (e) => window.__figures.push(e.detail.message.data));
"""


@pytest.fixture
def fast_server(django_db_blocker: Any) -> Iterator[Server]:
    """A uvicorn whose worker publishes its figures every 0.5 s while the dashboard is open."""
    with django_db_blocker.unblock():
        live = Server(env={ASYNC_UNSAFE: "", "NOTIFY_DASHBOARD_INTERVAL": "0.5"}).start()
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def unwatched(redis_client: Any) -> Iterator[None]:
    """After the test nobody watches: the session's server stops publishing figures within an interval."""
    yield
    redis_client.delete(f"{settings.NOTIFY['CHANNEL_PREFIX']}:dashboard:watched")


def test_the_dashboard_shows_held_polls_and_a_broadcast_going_out(fast_server, browser, make_user):
    server = fast_server
    alice = make_user("alice")
    staff = make_user("admin", is_staff=True, is_superuser=True)
    inbox = browser.context(alice).new_page()
    inbox.goto(f"{server.url}/inbox/")
    inbox.wait_for_selector('#connection[data-status="connected"]')

    page = browser.context(staff, init_script=RECORDER).new_page()
    page.goto(f"{server.url}/admin/notify/broadcast/dashboard/")
    # alice's inbox poll and the dashboard's own, on the one worker.
    page.wait_for_function("document.getElementById('total-held').textContent === '2'")
    # Nothing delivered yet: the dashboard's own polls, woken by the figures, are not counted.
    page.wait_for_function("window.__figures.some((d) => d.held === 2 && d.delivered_per_s === 0)")
    assert page.locator(f'#workers tbody tr[data-worker$=":{server.process.pid}"]').count() == 1
    assert page.locator("#redis").inner_text() == "connected"
    assert page.locator("#latency").inner_text() == "metrics off"

    # What the admin's Broadcast form does on save: one announcement to every active user.
    reach = send_broadcast(Broadcast.objects.create(title="Failover drill", body="Redis fails over at 06:30 UTC."))
    # The worker answered alice's poll with it: a delivery, counted in the next figures and shown...
    page.wait_for_function("window.__figures.some((d) => d.delivered_per_s > 0)")
    page.wait_for_function("Number(document.getElementById('total-delivered').textContent) > 0")
    # ... and the announcement is listed with its reach (alice and the staff user).
    row = page.locator("#broadcasts tbody tr", has_text="Failover drill")
    row.wait_for()
    assert row.locator("td").nth(2).inner_text() == str(reach) == "2"
    # The chart has points.
    page.wait_for_function("document.getElementById('line-held').getAttribute('points').split(' ').length >= 3")
    page.set_viewport_size({"width": 1100, "height": 1000})
    browser.document(page, "admin-dashboard")
