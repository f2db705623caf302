"""The inbox's "Remind me" form in a real browser, delivered live by a real notify_scheduler."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

import notify
from notify.models import Notification
from tests.browser.conftest import ASYNC_UNSAFE, wait_until
from tests.scheduler import Scheduler

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def scheduler(server: Any, django_db_blocker: Any) -> Iterator[Scheduler]:
    """A scheduler beside the session's uvicorn, on the same test database."""
    with django_db_blocker.unblock():
        process = Scheduler(env={ASYNC_UNSAFE: ""}).start()
    yield process
    assert process.stop() == 0
    assert "Traceback" not in process.log(), process.log()[-3000:]


def test_remind_me_form_schedules_a_reminder_that_appears_live(server, scheduler, browser, user):
    page = browser.context(user).new_page()
    page.goto(f"{server.url}/inbox/")
    page.wait_for_selector('#connection[data-status="connected"]')

    # README's quick start: "Remind me in 10 seconds" is what the form offers first.
    assert page.input_value("#remind select[name=delay]") == "10"
    page.fill("#remind-title", "Take the tea out")
    page.select_option("#remind select[name=delay]", label="in 1 minute")
    asked = timezone.now()
    page.click("#remind button[type=submit]")
    page.locator(".messages").wait_for()  # redirected back to the inbox
    page.wait_for_selector('#connection[data-status="connected"]')

    reminder = Notification.objects.get(recipient=user)
    assert reminder.title == "Take the tea out" and reminder.seq is None
    assert 55 <= (reminder.deliver_at - asked).total_seconds() <= 65
    notice = page.locator(f'.notice[data-tags~="reminder:{reminder.pk}"]')
    assert "Reminder set: it will appear here in 1 minute" in notice.inner_text()
    assert "Take the tea out" in page.locator(f'#reminders [data-id="{reminder.pk}"]').inner_text()
    assert page.locator("#inbox .inbox-item").count() == 0
    browser.screenshot(page, "reminder-pending")

    assert notice.count() == 1  # still there (success notices clear themselves only after 12 s)
    # A minute of real time is too long for a test: move it to a second from now.
    deliver_at = timezone.now() + datetime.timedelta(seconds=1)
    assert notify.reschedule(reminder, deliver_at) is True
    item = page.locator(f'#inbox .inbox-item[data-id="{reminder.pk}"]')
    item.wait_for(timeout=5000)
    arrived = timezone.now()

    assert deliver_at <= arrived < deliver_at + datetime.timedelta(seconds=1.5)
    assert item.locator(".inbox-item-title").inner_text() == "Take the tea out"
    assert "to be reminded in 1 minute" in item.locator(".inbox-item-body").inner_text()
    page.wait_for_function("document.getElementById('unread-count').textContent === '1'", timeout=1000)
    assert page.locator(f'#reminders [data-id="{reminder.pk}"]').count() == 0  # no longer pending
    assert notice.count() == 0  # "it will appear here" no longer holds: the notice went with it
    browser.screenshot(page, "reminder-delivered")
    wait_until(lambda: Notification.objects.get(pk=reminder.pk).seq is not None)
