"""The demo's preferences page in a real browser: what a user unticks there stops reaching their inbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import time
from typing import Any

import pytest

import notify
from notify import preferences
from notify.models import Notification
from tests.server import Server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def emailing_server(redis_answers: None, django_db_setup: Any, django_db_blocker: Any) -> Iterator[Server]:
    """A uvicorn that emails digests, as `make run` does: the page offers the email choices."""
    with django_db_blocker.unblock():
        live = Server(env={"NOTIFY_EMAIL_DIGESTS": "1"}).start()
    yield live
    live.stop()


def row(page: Any, label: str) -> Any:
    return page.locator(".preference-table tbody tr", has=page.locator("th", has_text=label))


def test_unticking_a_kind_in_the_page_keeps_it_out_of_the_inbox_and_others_still_arrive(server, browser, user):
    page = browser.context(user).new_page()
    page.goto(f"{server.url}/preferences/")
    messages = row(page, "Messages from staff")
    assert messages.locator("td").nth(0).locator("input").is_checked()  # nothing chosen yet: everything
    messages.locator("td").nth(0).locator("input").uncheck()
    page.click(".preferences button[type=submit]")
    page.locator(".notice", has_text="Preferences saved.").wait_for()
    assert not row(page, "Messages from staff").locator("td").nth(0).locator("input").is_checked()
    stored = preferences.preferences_for(user)
    assert [(r.kind, r.level, r.delivery.page) for r in stored.rules] == [("message", "", False)]

    inbox = browser.context(user).new_page()
    inbox.goto(f"{server.url}/inbox/")
    inbox.wait_for_selector('#connection[data-status="connected"]')
    assert notify.send(user, "From staff", kind="message") == []  # wanted nowhere: nothing stored
    [task] = notify.send(user, "Task assigned: tidy up", kind="task")
    inbox.locator(f'#inbox .inbox-item[data-id="{task.pk}"]').wait_for()
    assert inbox.locator("#inbox .inbox-item").count() == 1
    assert not Notification.objects.filter(recipient=user, title="From staff").exists()


def test_a_level_row_applies_to_a_kind_left_like_everything_else(emailing_server, browser, user, settings):
    page = browser.context(user).new_page()
    page.goto(f"{emailing_server.url}/preferences/")
    row(page, "Warnings of any kind").locator("td").nth(0).locator("input").uncheck()
    row(page, "Your reminders").locator("td").nth(1).locator("input").uncheck()
    page.fill("#id_quiet_start", "22:00")
    page.fill("#id_quiet_end", "07:30")
    page.select_option("#id_timezone", "Europe/Paris")
    page.click(".preferences button[type=submit]")
    page.locator(".notice", has_text="Preferences saved.").wait_for()
    assert notify.send(user, "careful", level="warning", kind="task") == []
    assert len(notify.send(user, "fine", level="info", kind="task")) == 1
    stored = preferences.preferences_for(user)
    assert (stored.quiet_start, stored.quiet_end, stored.timezone) == (time(22), time(7, 30), "Europe/Paris")
    settings.NOTIFY = {**settings.NOTIFY, "EMAIL_DIGESTS": True}  # as the server's
    assert stored.delivery("info", "reminder") == preferences.Delivery(page=True, email=False)
    assert stored.delivery("info", "task") == preferences.Delivery(page=True, email=True)
    page.set_viewport_size({"width": 900, "height": 1020})  # the whole form, quiet hours included
    browser.document(page, "preferences")
