"""The admin's "Send notification…" action, in one browser, reaching an inbox open in another."""

from __future__ import annotations

import time

import pytest

from notify.models import Notification

pytestmark = pytest.mark.browser


def test_a_notification_sent_from_the_admin_appears_in_an_open_inbox_within_a_second(server, browser, make_user):
    alice = make_user("alice")
    staff = make_user("admin", is_staff=True, is_superuser=True)
    inbox = browser.context(alice).new_page()
    inbox.goto(f"{server.url}/inbox/")
    inbox.wait_for_selector('#connection[data-status="connected"]')

    admin = browser.context(staff).new_page()
    admin.goto(f"{server.url}/admin/auth/user/?q={alice.username}")
    admin.check(f'input.action-select[value="{alice.pk}"]')
    admin.select_option('select[name="action"]', "send_notification")
    admin.click('button[name="index"]')
    admin.wait_for_selector("#notify-send-form")
    admin.fill('input[name="title"]', "Maintenance tonight")
    admin.fill('textarea[name="body"]', "The site is read-only from 22:00 to 22:30 UTC.")
    admin.select_option('select[name="level"]', "warning")
    browser.document(admin, "admin-send")
    with admin.expect_navigation():
        admin.click('#notify-send-form input[type="submit"]')
    sent_at = time.monotonic()  # the admin's answer is back: the send has committed

    item = inbox.locator("#inbox .inbox-item", has_text="Maintenance tonight")
    item.wait_for(timeout=1000)
    assert time.monotonic() - sent_at < 1.0
    inbox.wait_for_function("document.querySelector('.notify-bell__badge').textContent === '1'", timeout=1000)
    assert "1 user" in admin.locator(".messagelist").inner_text()
    (notification,) = Notification.objects.filter(recipient=alice)
    assert (notification.title, notification.level) == ("Maintenance tonight", "warning")
