"""Issue 13's abuse cases, each tried as an attacker would, over real HTTP against a real uvicorn.

2. a staff user who may revoke tokens cannot re-own one (the admin's change form, and the model);
3. a notification cannot be moved to another user's stream (which broke that user's later sends);
4. deeply nested JSON is refused with 400 before anything is stored, on /notify/read and on publish;
5. a flood of query parameters is a 400 JSON on every notify endpoint, not a 500 with a traceback;
6. a broadcast needs the send permission too, and one to every active user asks for confirmation.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
from django.utils import timezone

import notify
from notify.models import Announcement, ApiToken, Broadcast, FrozenFieldChanged, Notification, TopicMessage
from tests.server import Response, expect_error

pytestmark = pytest.mark.django_db(transaction=True)


def staff_with(make_user: Any, *codenames: str) -> Any:
    user = make_user(is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def admin_post(server: Any, cookie: str, path: str, data: dict[str, Any]) -> Response:
    """A form POSTed to the admin as a browser signed in with ``cookie`` would, CSRF token included."""
    secret = _get_new_csrf_string()
    return server.request(
        "POST",
        path,
        body=urlencode(data, doseq=True).encode(),
        headers={
            "Cookie": f"{cookie}; csrftoken={secret}",
            "X-CSRFToken": _mask_cipher_secret(secret),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


def room() -> str:
    return f"room:abuse-{os.getpid()}-{os.urandom(3).hex()}"


# --- 2. the token admin cannot hand out identities ---------------------------------------------------------------


def test_a_staff_user_who_may_change_tokens_cannot_re_own_one_in_the_admin(
    server, make_user, token_for, session_cookie
):
    boss = make_user(is_staff=True, is_superuser=True)
    staff = staff_with(make_user, "view_apitoken", "change_apitoken")
    raw = token_for(staff)
    token = ApiToken.objects.get(user=staff)
    notify.send(boss, "for the boss only")

    reply = admin_post(
        server,
        session_cookie(staff),
        f"/admin/notify/apitoken/{token.pk}/change/",
        {"user": boss.pk, "name": "renamed", "revoked_at_0": "", "revoked_at_1": ""},
    )

    assert reply.status == 302, reply.body[:2000]  # the form saved what it may: the name
    token.refresh_from_db()
    assert (token.user_id, token.name) == (staff.pk, "renamed")
    page = server.poll(raw).json()
    assert page["notifications"] == [] and page["unread_count"] == 0  # still the staff user's own inbox


def test_the_change_form_shows_a_tokens_user_read_only(make_user):
    from django.test import Client

    staff = staff_with(make_user, "view_apitoken", "change_apitoken")
    token, _ = ApiToken.issue(staff)
    client = Client()
    client.force_login(staff)
    form = client.get(f"/admin/notify/apitoken/{token.pk}/change/").content.decode()
    assert 'name="user"' not in form and staff.get_username() in form


def test_the_model_refuses_to_re_own_a_token(make_user):
    alice, mallory = make_user(), make_user()
    token, _ = ApiToken.issue(alice)
    token.user = mallory
    with pytest.raises(FrozenFieldChanged, match="user"):
        token.save()
    token.revoke()  # a save of other fields still works (update_fields leaves 'user' out)
    assert ApiToken.objects.get(pk=token.pk).user_id == alice.pk


# --- 3. a notification cannot be moved into another user's stream -----------------------------------------------


def test_moving_a_notification_in_the_admin_is_refused_and_later_sends_still_work(
    server, make_user, token_for, session_cookie
):
    admin = make_user(is_staff=True, is_superuser=True)
    alice, bob = make_user(), make_user()
    [moved] = notify.send(alice, "for alice")
    bob_token = token_for(bob)
    cursor = server.poll(bob_token).json()["cursor"]
    created = timezone.localtime(moved.created_at)

    reply = admin_post(
        server,
        session_cookie(admin),
        f"/admin/notify/notification/{moved.pk}/change/",
        {
            "recipient": bob.pk,
            "title": "edited",
            "body": "",
            "level": "info",
            "url": "",
            "data": "{}",
            "created_at_0": created.strftime("%Y-%m-%d"),
            "created_at_1": created.strftime("%H:%M:%S"),
            "read_at_0": "",
            "read_at_1": "",
        },
    )

    assert reply.status == 302, reply.body[:2000]
    moved.refresh_from_db()
    assert (moved.recipient_id, moved.seq, moved.title) == (alice.pk, 1, "edited")
    # Bob's stream reaches the moved row's seq and goes on: no IntegrityError, alone or in a send to everyone.
    notify.send(bob, "b1")
    notify.send(get_user_model().objects.filter(is_active=True), "everyone")
    page = server.poll(bob_token, after=cursor, timeout=5).json()
    assert [n["title"] for n in page["notifications"]] == ["b1", "everyone"]


def test_the_model_refuses_to_move_or_renumber_a_notification(make_user):
    alice, bob = make_user(), make_user()
    [notification] = notify.send(alice, "mine")
    notification.recipient = bob
    with pytest.raises(FrozenFieldChanged, match="recipient"):
        notification.save()
    notification = Notification.objects.get(pk=notification.pk)
    notification.seq = 7
    with pytest.raises(FrozenFieldChanged, match="seq"):
        notification.save()
    notification = Notification.objects.get(pk=notification.pk)
    notification.title = "renamed"
    notification.save()  # other fields may change
    assert Notification.objects.values_list("recipient_id", "seq", "title").get() == (alice.pk, 1, "renamed")


def test_a_stale_copy_cannot_overwrite_a_notification_numbered_since(make_user):
    """The check compares with the row as stored, not as loaded: a reminder numbered by the
    dispatcher meanwhile is not un-numbered by saving an old copy of it."""
    alice = make_user()
    [reminder] = notify.send(alice, "later", deliver_at=timezone.now() + datetime.timedelta(hours=1))
    Notification.objects.filter(pk=reminder.pk).update(seq=1)  # what the dispatcher does (bulk_update)
    with pytest.raises(FrozenFieldChanged, match="seq"):
        reminder.save()
    assert Notification.objects.get(pk=reminder.pk).seq == 1


# --- 4. deep JSON ------------------------------------------------------------------------------------------------


DEEP = b"[" * 100_000 + b"]" * 100_000


def nested(levels: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for _ in range(levels - 1):
        data = {"a": data}
    return data


def nested_json(levels: int) -> bytes:
    """``nested(levels)`` as JSON, written out without json.dumps (which recurses)."""
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


def test_a_read_body_nested_100000_deep_gets_400_json(server, token):
    reply = server.request(
        "POST",
        "/notify/read",
        body=DEEP,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    body = expect_error(reply, 400, "too_deep")
    assert "32" in body["detail"]


def test_a_publish_body_nested_100000_deep_gets_400_and_stores_nothing(server, token):
    name = room()
    reply = server.request(
        "POST",
        f"/notify/topics/{name}/publish",
        body=b'{"data":' + DEEP + b"}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    expect_error(reply, 400, "too_deep")
    assert not TopicMessage.objects.filter(topic_id=name).exists()


def test_a_publish_of_data_nested_960_deep_gets_400_and_stores_nothing(server, token):
    name = room()
    reply = server.request(
        "POST",
        f"/notify/topics/{name}/publish",
        body=b'{"data":' + nested_json(960) + b"}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    expect_error(reply, 400, "too_deep")
    assert not TopicMessage.objects.filter(topic_id=name).exists()
    # Data at the limit still goes through, and comes back whole.
    ok = server.request(
        "POST",
        f"/notify/topics/{name}/publish",
        body=json.dumps({"data": nested(32)}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert ok.status == 201, ok.body[:500]
    assert ok.json()["message"]["data"] == nested(32)


def test_publishing_deep_data_from_python_is_refused_before_anything_is_stored(alice):
    name = room()
    with pytest.raises(ValueError, match="nests more than 32 levels"):
        notify.publish(name, nested(960), sender=alice)
    assert not TopicMessage.objects.filter(topic_id=name).exists()


# --- 5. a flood of query parameters ------------------------------------------------------------------------------


FLOOD = "&".join(["a=1"] * 1001)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/notify/poll"),
        ("GET", "/notify/poll?streams=inbox,room:x&after=inbox:0,room:x:0&"),
        ("GET", "/notify/topics/room:x/poll"),
        ("POST", "/notify/read"),
        ("POST", "/notify/topics/room:x/publish"),
    ],
)
@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "token"])
def test_a_thousand_and_one_query_parameters_get_400_json_without_a_traceback(
    server, token, method, path, authenticated
):
    logged = len(server.own_log())
    headers = {"Content-Type": "application/json"}
    if authenticated:
        headers["Authorization"] = f"Bearer {token}"
    separator = "" if path.endswith("&") else "?"
    reply = server.request(method, f"{path}{separator}{FLOOD}", headers=headers, body=b'{"data": {"x": 1}}')
    body = expect_error(reply, 400, "too_many_fields")
    assert "1000" in body["detail"]
    assert not TopicMessage.objects.exists()
    new_log = server.own_log()[logged:]
    assert "Traceback" not in new_log and "TooManyFieldsSent" not in new_log, new_log[-3000:]


def test_a_session_post_of_a_thousand_and_one_form_fields_gets_400_json(server, alice, session_cookie):
    secret = _get_new_csrf_string()
    reply = server.request(
        "POST",
        "/notify/read",
        body=FLOOD.encode(),
        headers={
            "Cookie": f"{session_cookie(alice)}; csrftoken={secret}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    expect_error(reply, 400, "too_many_fields")


# --- 6. broadcasts ---------------------------------------------------------------------------------------------------


BROADCAST = {"title": "Everyone", "body": "", "level": "info", "url": ""}


def test_a_broadcast_needs_the_send_permission_too(make_user):
    # In process: Django logs the PermissionDenied of a 403 with its traceback, which the
    # session server's log must not show (Server.check_log).
    from django.test import Client

    make_user()
    client = Client()
    client.force_login(staff_with(make_user, "view_broadcast", "add_broadcast"))
    assert client.post("/admin/notify/broadcast/add/", {**BROADCAST, "_confirm": "1"}).status_code == 403
    assert client.post("/admin/notify/broadcast/add/", BROADCAST).status_code == 403
    assert not Broadcast.objects.exists() and not Notification.objects.exists()


def test_a_broadcast_to_every_active_user_asks_for_confirmation_with_the_count(server, make_user, session_cookie):
    for _ in range(3):
        make_user()
    make_user(is_active=False)
    staff = staff_with(make_user, "view_broadcast", "add_broadcast", "add_notification")
    cookie = session_cookie(staff)
    active = get_user_model().objects.filter(is_active=True).count()  # the three and the sender

    asked = admin_post(server, cookie, "/admin/notify/broadcast/add/", BROADCAST)

    assert asked.status == 200, asked.body[:2000]
    page = asked.body.decode()
    assert f"all {active} active users" in page and 'name="_confirm"' in page
    assert not Broadcast.objects.exists() and not Notification.objects.exists()  # nothing sent yet

    confirmed = admin_post(server, cookie, "/admin/notify/broadcast/add/", {**BROADCAST, "_confirm": "1"})

    assert confirmed.status == 302, confirmed.body[:2000]
    assert Broadcast.objects.get().recipient_count == active
    # To everyone: one announcement (notify.announce), not a row per user.
    assert Announcement.objects.filter(title="Everyone").count() == 1
