"""The server side of the browser pieces, without a browser: template tags, the demo pages.

(Here beside the browser tests they support; they need no Chromium and also run on PostgreSQL.)
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Permission
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory

import notify
from notify.models import Notification
from notify.templatetags.notify import notify_url


def render(source: str, user) -> str:  # type: ignore[no-untyped-def]
    request = RequestFactory().get("/")
    request.user = user
    return Template("{% load notify %}" + source).render(Context({"request": request}))


def test_client_tag_configures_notify_js_for_the_user(make_user):
    user = make_user()

    html = render("{% notify_client %}", user)

    assert 'src="/static/notify/notify.js"' in html and " defer " in html
    assert 'data-notify-poll-url="/notify/poll"' in html
    assert 'data-notify-read-url="/notify/read"' in html
    assert f'data-notify-user="{user.pk}"' in html
    assert 'data-notify-timeout="25"' in html
    assert 'data-notify-csrf="' in html  # rendered: the cookie may be HttpOnly
    assert "data-notify-desktop" not in html


def test_client_tag_options(make_user):
    html = render("{% notify_client timeout=10 limit=20 desktop=True autostart=False %}", make_user())

    assert 'data-notify-timeout="10"' in html and 'data-notify-limit="20"' in html
    assert 'data-notify-desktop="true"' in html and 'data-notify-autostart="false"' in html


def test_client_tag_refuses_a_bad_timeout(make_user):
    with pytest.raises(TemplateSyntaxError, match="timeout must be a positive number, got 'soon'"):
        render('{% notify_client timeout="soon" %}', make_user())


def test_tags_render_nothing_for_anonymous_users():
    assert render("{% notify_client %}{% notify_bell %}", AnonymousUser()).strip() == ""


def test_bell_tag(make_user):
    html = render('{% notify_bell see_all="/inbox/" max_items=5 %}', make_user())

    assert "notify/notify.css" in html and "notify/notify-bell.js" in html
    assert 'data-notify-max-items="5"' in html and 'href="/inbox/"' in html


@pytest.mark.parametrize("url", ["javascript:alert(1)", " JavaScript:alert(1)", "java\tscript:x", "data:text/html,x"])
def test_notification_urls_other_than_http_are_dropped(url):
    assert notify_url(url) == ""


@pytest.mark.parametrize("url", ["/orders/42/", "https://example.com/a?b=c:d", "?page=2", ""])
def test_relative_and_http_urls_are_kept(url):
    assert notify_url(url) == url


def test_inbox_renders_notifications_escaped_and_without_script_links(client, make_user):
    user = make_user()
    notify.send(user, "<img src=x onerror=alert(1)>", url="javascript:alert(1)")
    client.force_login(user)

    html = client.get("/inbox/").content.decode()

    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'href="javascript:' not in html
    assert '<a class="inbox-item-title"' not in html  # the title is shown, not linked


def test_send_page_needs_the_add_notification_permission(client, make_user):
    client.force_login(make_user())

    assert client.get("/send/").status_code == 403
    client.logout()
    assert client.get("/send/").status_code == 302  # anonymous: to the login page


def test_send_page_notifies_the_chosen_user(client, make_user):
    staff = make_user(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="add_notification"))
    alice = make_user()
    client.force_login(staff)
    assert client.get("/send/").status_code == 200

    reply = client.post(
        "/send/", {"recipient": alice.username, "title": "Hi", "body": "there", "level": "warning", "url": "/inbox/"}
    )

    assert reply.status_code == 302
    sent = Notification.objects.get(recipient=alice)
    assert (sent.title, sent.body, sent.level, sent.url) == ("Hi", "there", "warning", "/inbox/")
