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


def test_navigation_leads_to_inbox_and_chat_and_for_staff_to_the_admin(client, make_user):
    client.force_login(make_user())
    html = client.get("/inbox/").content.decode()
    assert 'href="/inbox/" aria-current="page">Inbox</a>' in html and 'href="/chat/lobby/">Chat</a>' in html
    assert 'href="/admin/"' not in html

    client.force_login(make_user(is_staff=True))
    assert 'href="/admin/">Admin</a>' in client.get("/chat/lobby/").content.decode()


def test_a_staff_room_is_refused_with_the_403_page_of_the_site(client, make_user):
    client.force_login(make_user())

    answer = client.get("/chat/staff-ops/")

    assert answer.status_code == 403
    assert [t.name for t in answer.templates][:2] == ["403.html", "error.html"]
    html = answer.content.decode()
    assert 'class="site-header"' in html and 'href="/inbox/"' in html
    assert "You may not read the room #staff-ops." in html


def test_the_send_page_refuses_with_the_403_page_of_the_site(client, make_user):
    client.force_login(make_user())

    answer = client.get("/send/")

    assert answer.status_code == 403 and answer.templates[0].name == "403.html"
    assert 'class="site-header"' in answer.content.decode()


def test_unknown_pages_answer_404_in_the_site_layout(client, make_user):
    client.force_login(make_user())

    answer = client.get("/no/such/page/")

    assert answer.status_code == 404
    html = answer.content.decode()
    assert 'class="site-header"' in html and "<code>/no/such/page/</code>" in html


def test_the_500_page_renders_without_a_request_in_the_site_layout():
    from django.views.defaults import server_error

    answer = server_error(RequestFactory().get("/"))

    assert answer.status_code == 500
    html = answer.content.decode()
    assert 'class="site-header"' in html and "Something went wrong" in html
    assert "notify.js" not in html  # no user to poll for


def test_a_form_sent_without_its_csrf_token_gets_the_403_page_of_the_site(make_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user())

    answer = client.post("/inbox/remind/", {"delay": "10"})

    assert answer.status_code == 403
    assert 'class="site-header"' in answer.content.decode() and "This form has expired" in answer.content.decode()


def test_favicon_ico_leads_to_the_icon_that_pages_link(client):
    from django.contrib.staticfiles import finders

    answer = client.get("/favicon.ico")

    assert answer.status_code == 301 and answer["Location"] == "/static/demo/favicon.svg"
    assert finders.find("demo/favicon.svg")
    assert '<link rel="icon" href="/static/demo/favicon.svg"' in client.get("/login/").content.decode()


def test_remind_me_offers_10_seconds_first_and_tags_its_notice_with_the_reminder(client, make_user):
    user = make_user()
    client.force_login(user)
    assert '<option value="10" selected>in 10 seconds</option>' in client.get("/inbox/").content.decode()

    html = client.post("/inbox/remind/", {"delay": "10", "title": "tea"}, follow=True).content.decode()

    reminder = Notification.objects.get(recipient=user)
    assert f'data-tags="reminder:{reminder.pk}"' in html and "Reminder set: it will appear here in 10 seconds." in html
    assert reminder.body == "You asked to be reminded in 10 seconds."


def test_the_task_admin_chooses_the_assignee_by_name(client, make_user):
    alice = make_user("alice")
    make_user("bob")
    client.force_login(make_user("root", is_staff=True, is_superuser=True))

    form = client.get("/admin/demo/task/add/").content.decode()
    assert 'class="admin-autocomplete' in form and 'name="assignee"' in form

    found = client.get(
        "/admin/autocomplete/", {"app_label": "demo", "model_name": "task", "field_name": "assignee", "term": "ali"}
    ).json()
    assert found["results"] == [{"id": str(alice.pk), "text": "alice"}]
