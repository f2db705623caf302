"""The demo site as a new user sees it, in Chromium: the login page, error pages, notices,
times, the icon, and a server log with nothing to warn about."""

from __future__ import annotations

import datetime
import re
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone

import notify
from notify import topics

pytestmark = pytest.mark.browser


def test_login_page_has_a_heading_and_aligned_fields_and_leads_to_the_inbox(server, browser, make_user):
    alice = make_user("alice")
    # A hash the server knows: the tests' own settings hash with MD5 (fast), the server's do not.
    hasher = PBKDF2PasswordHasher()
    alice.password = hasher.encode("her password", hasher.salt(), iterations=1000)
    alice.save(update_fields=["password"])
    page = browser.context(None).new_page()
    page.goto(f"{server.url}/inbox/")  # logged out: sent to log in first

    assert page.url.startswith(f"{server.url}/login/")
    assert page.locator("h2").inner_text() == "Log in"
    username = page.locator("#id_username").bounding_box()
    password = page.locator("#id_password").bounding_box()
    assert (username["x"], username["width"]) == (password["x"], password["width"])
    browser.document(page, "login")

    page.fill("#id_username", "alice")
    page.fill("#id_password", "not her password")
    page.click("button[type=submit]")
    assert "correct username and password" in page.locator(".notice-error").inner_text()

    page.fill("#id_password", "her password")
    page.click("button[type=submit]")
    page.wait_for_selector('#connection[data-status="connected"]')
    assert page.url == f"{server.url}/inbox/"


def test_a_staff_room_answers_403_in_the_site_layout(server, browser, make_user):
    page = browser.context(make_user("bob")).new_page()

    answer = page.goto(f"{server.url}/chat/staff-ops/")

    assert answer.status == 403
    assert page.locator(".error-code").inner_text() == "403"
    assert "You may not read the room #staff-ops." in page.locator(".error-page").inner_text()
    nav = page.locator("nav.site-nav")
    assert nav.get_by_role("link", name="Inbox").is_visible() and nav.get_by_role("link", name="Chat").is_visible()
    page.locator(".notify-bell__button").wait_for()  # the bell, as on every page
    browser.document(page, "error")


def test_notices_close_on_click(server, browser, user):
    page = browser.context(user).new_page()
    page.goto(f"{server.url}/inbox/")
    page.click("#remind button[type=submit]")
    notice = page.locator(".notice", has_text="Reminder set")
    notice.wait_for()

    notice.locator(".notice-close").click()

    assert notice.count() == 0 and page.locator(".messages").count() == 0


def test_every_time_is_local_on_a_24_hour_clock(server, browser, make_user):
    """A browser in Los Angeles with an en-US locale (12-hour clock by default) sees every time,
    server- or script-rendered, as its own local time in the one format."""
    zone = "America/Los_Angeles"
    user = make_user()
    (old,) = notify.send(user, "rendered by the server")
    (reminder,) = notify.send(user, "later", deliver_at=timezone.now() + datetime.timedelta(hours=1))
    said = topics.publish("room:lobby", {"text": "hi"}, sender=user)
    context = browser.context(user, locale="en-US", timezone_id=zone)

    def local(moment: datetime.datetime, pattern: str) -> str:
        return moment.astimezone(ZoneInfo(zone)).strftime(pattern)

    inbox = context.new_page()
    inbox.goto(f"{server.url}/inbox/")
    inbox.wait_for_selector('#connection[data-status="connected"]')
    (live,) = notify.send(user, "rendered by the script")
    inbox.locator(f'#inbox [data-id="{live.pk}"]').wait_for()

    def shown(selector: str) -> str:
        return inbox.locator(selector).inner_text()

    assert shown(f'#inbox [data-id="{old.pk}"] time') == local(old.created_at, "%Y-%m-%d %H:%M")
    assert shown(f'#inbox [data-id="{live.pk}"] time') == local(live.created_at, "%Y-%m-%d %H:%M")
    assert shown(f'#reminders [data-id="{reminder.pk}"] time') == local(reminder.deliver_at, "%H:%M:%S")
    inbox.locator(".notify-bell__button").click()
    bell_time = inbox.locator(".notify-bell__list time").first
    assert bell_time.get_attribute("title") == local(live.created_at, "%Y-%m-%d %H:%M")

    chat = context.new_page()
    chat.goto(f"{server.url}/chat/lobby/")
    assert chat.locator(f'#messages [data-id="{said.pk}"] time').inner_text() == local(said.created_at, "%H:%M")
    for text in (shown("main"), chat.locator("main").inner_text()):
        assert not re.search(r"\b(AM|PM)\b", text)


def test_favicon_and_static_files_leave_nothing_in_the_server_log(server, browser, user):
    logged_before = server.log_path.stat().st_size
    context = browser.context(user)
    failed = []
    context.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
    page = context.new_page()
    page.goto(f"{server.url}/inbox/")
    page.wait_for_selector('#connection[data-status="connected"]')
    page.goto(f"{server.url}/admin/")  # Django's admin pages link the icon too

    icon = page.goto(f"{server.url}/favicon.ico")  # what a browser asks for when no page says

    assert icon.status == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert failed == []
    log = server.log_path.read_bytes()
    # Python warns once per process: the whole log, not only this test's part.
    assert b"StreamingHttpResponse" not in log, log[-3000:]
    assert b"Not Found:" not in log[logged_before:], log[logged_before:][-3000:]
