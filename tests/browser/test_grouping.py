"""Grouping in a real browser (docs/grouping.md): the inbox page and the bell keep one item per group."""

from __future__ import annotations

import pytest

import notify
from notify.models import Notification
from tests.browser.conftest import wait_until

pytestmark = pytest.mark.browser

COMMENT = {"kind": "blog.comment", "group": "post:42"}


def open_inbox(browser, user, base_url: str):  # type: ignore[no-untyped-def]
    page = browser.context(user).new_page()
    page.goto(f"{base_url}/inbox/")
    page.wait_for_selector('#connection[data-status="connected"]')
    return page


def test_a_grouped_notification_replaces_the_earlier_one_in_the_inbox_and_the_bell(server, browser, user):
    (first,) = notify.send(user, "{actors} commented on Post 42", **COMMENT, actor="alice")
    page = open_inbox(browser, user, server.url)  # the first is rendered by the server
    page.locator(".notify-bell__button").click()
    page.locator(f'.notify-bell__list [data-notify-id="{first.pk}"]').wait_for()

    (plain,) = notify.send(user, "Build finished")
    (second,) = notify.send(user, "{actors} commented on Post 42", **COMMENT, actor="bob")
    (third,) = notify.send(user, "{actors} commented on Post 42", **COMMENT, actor="carol")
    page.locator(f'#inbox [data-id="{third.pk}"]').wait_for(timeout=2000)
    page.locator(f'.notify-bell__list [data-notify-id="{third.pk}"]').wait_for(timeout=2000)

    inbox_ids = page.locator("#inbox .inbox-item").evaluate_all("l => l.map(e => Number(e.dataset.id))")
    bell_ids = page.locator(".notify-bell__list li").evaluate_all("l => l.map(e => Number(e.dataset.notifyId))")
    assert inbox_ids == bell_ids == [third.pk, plain.pk]
    assert page.locator(f'#inbox [data-id="{third.pk}"] .inbox-item-title').inner_text() == (
        "carol and 2 others commented on Post 42"
    )
    page.wait_for_function("document.querySelector('.notify-bell__badge').textContent === '2'", timeout=2000)
    assert page.locator("#unread-count").inner_text() == "2"
    assert {second.pk, first.pk}.isdisjoint(page.evaluate("window.Notify.client.notifications.map(n => n.id)"))


def test_a_read_group_stays_listed_beside_the_new_one(server, browser, user):
    page = open_inbox(browser, user, server.url)
    (first,) = notify.send(user, "{actors} commented on Post 42", **COMMENT, actor="alice")
    item = page.locator(f'#inbox [data-id="{first.pk}"]')
    item.wait_for(timeout=2000)
    item.locator(".mark-read").click()
    wait_until(lambda: Notification.objects.get(pk=first.pk).read_at is not None)
    (second,) = notify.send(user, "{actors} commented on Post 42", **COMMENT, actor="bob")
    page.locator(f'#inbox [data-id="{second.pk}"]').wait_for(timeout=2000)
    assert page.locator("#inbox .inbox-item").count() == 2  # another group: the read one stays


def test_the_demos_like_button_collapses_likes_into_one_notification(server, browser, make_user):
    """docs/screenshots/grouping.png: three likes of the demo post, one notification."""
    user = make_user("alice")
    notify.send(user, "Welcome to the demo", "Notifications arrive here without a reload.")
    page = open_inbox(browser, user, server.url)
    for _ in range(3):
        page.click("#like-button")
        page.wait_for_selector('#connection[data-status="connected"]')
    [liked] = Notification.objects.filter(recipient=user, kind="demo.like")
    assert (liked.group_count, liked.group_actors) == (3, ["Linus", "Grace", "Ada"])
    assert page.locator("#inbox .inbox-item").count() == 2
    page.locator(f'#inbox [data-id="{liked.pk}"]').wait_for()
    assert page.locator(".inbox-item-title").first.inner_text() == "Linus and 2 others liked your post “Hello, notify”"
    page.locator(".notify-bell__button").click()
    page.locator(".notify-bell__panel").wait_for()
    browser.document(page, "grouping")
