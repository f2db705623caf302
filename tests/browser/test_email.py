"""The digest email as a mail client shows it (Chromium renders its HTML part), and its unsubscribe
link followed in the browser: docs/screenshots/email-digest.png."""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.utils import timezone

import notify
from notify import preferences
from notify.models import Notification
from tests.smtp import SmtpServer, html_of

pytestmark = pytest.mark.browser


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def test_the_digest_renders_and_its_unsubscribe_link_works_in_a_browser(server, browser, make_user, smtp, settings):
    settings.NOTIFY = {
        **settings.NOTIFY,
        "EMAIL_DIGESTS": True,
        "EMAIL_DELAY": dict.fromkeys(("info", "success", "warning", "error"), 60),
        "EMAIL_DIGEST_MAX_ITEMS": 5,
        "SITE_URL": server.url,  # the links lead to the live server
        "INBOX_URL": "/inbox/",
    }
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    user = make_user("alice", email="alice@example.com")
    sent = [
        *notify.send(user, "Invoice #1042 is ready", "€ 1,250.00, due on 31 December.", kind="billing", url="/inbox/"),
        *notify.send(user, "Payment failed", "The card ending in 4242 was declined.", kind="billing", level="error"),
        *notify.send(user, "Bob commented on “Q4 plan”", "Looks good, one question on the budget.", kind="comments"),
        *notify.send(user, "Deploy finished", "main is live on production.", kind="deploys", level="success"),
        *notify.send(user, "Disk almost full", "Volume /data is at 91%.", kind="deploys", level="warning"),
        *notify.send(user, "Weekly summary", "12 new members joined your team.", kind="deploys"),
        *notify.send(user, "Carol mentioned you", kind="comments"),
    ]
    Notification.objects.filter(pk=sent[2].pk).update(group_count=4)  # "Bob and 3 others" (grouping's)
    Notification.objects.filter(pk__in=[n.pk for n in sent]).update(
        created_at=timezone.now() - datetime.timedelta(hours=1)
    )
    call_command("notify_scheduler", "--once", stdout=io.StringIO())
    [message] = smtp.mailbox.received()

    page = browser.context(None).new_page()
    page.set_viewport_size({"width": 640, "height": 700})
    page.set_content(html_of(message))
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 640, "height": height})
    assert page.locator(".digest-kind").count() == 3
    assert page.locator(".digest-item").count() == 5
    assert "and 2 more" in page.locator(".digest-more").inner_text()
    browser.document(page, "email-digest")

    page.get_by_role("link", name="Unsubscribe").click()
    page.wait_for_selector("text=Unsubscribe from email?")
    assert preferences.preferences_for(user).email_enabled is True  # following the link changed nothing
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("text=You are unsubscribed")
    assert preferences.preferences_for(user).email_enabled is False
