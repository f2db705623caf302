"""Notifications sent from the admin: the user action and announcements (Broadcast)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from notify.models import Announcement, Broadcast, Notification
from notify.sending import send_broadcast


@pytest.fixture
def admin_client(make_user):
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def staff_client(make_user, *permissions: str) -> Client:
    user = make_user(is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def choose_action(client: Client, users, **extra):
    return client.post(
        "/admin/auth/user/",
        {"action": "send_notification", "_selected_action": [u.pk for u in users], **extra},
    )


def test_send_action_shows_a_form_then_notifies_the_selected_users(admin_client, make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    form = choose_action(admin_client, [alice, bob])
    assert form.status_code == 200
    assert b'id="notify-send-form"' in form.content

    done = choose_action(
        admin_client, [alice, bob], apply="1", title="Maintenance", body="at 22:00", level="warning", url="/status"
    )
    assert done.status_code == 302
    sent = Notification.objects.filter(title="Maintenance")
    assert sorted(sent.values_list("recipient_id", flat=True)) == sorted([alice.pk, bob.pk])
    assert set(sent.values_list("level", "body", "url")) == {("warning", "at 22:00", "/status")}
    assert not Notification.objects.filter(recipient=carol).exists()


def test_send_action_sets_the_kind_and_the_recipients_preferences_decide(admin_client, make_user):
    from notify import preferences

    alice, bob = make_user(), make_user()
    preferences.set_rule(bob, kind="message", page=False, email=False)
    form = choose_action(admin_client, [alice, bob])
    assert b'name="kind"' in form.content and b"message, reminder, task" in form.content  # the demo's kinds

    done = choose_action(admin_client, [alice, bob], apply="1", title="From staff", level="info", kind="message")
    assert done.status_code == 302
    assert list(Notification.objects.values_list("recipient_id", "kind")) == [(alice.pk, "message")]

    refused = choose_action(admin_client, [alice], apply="1", title="Bad", level="info", kind="Not A Kind!")
    assert refused.status_code == 200 and b"A kind is 1 to 50 characters" in refused.content
    assert not Notification.objects.filter(title="Bad").exists()


def test_send_action_with_an_invalid_form_shows_the_errors_and_sends_nothing(admin_client, make_user):
    alice = make_user()
    reply = choose_action(admin_client, [alice], apply="1", title="", level="fatal")
    assert reply.status_code == 200
    assert b"This field is required" in reply.content
    assert not Notification.objects.exists()


def test_send_action_needs_the_add_notification_permission(make_user):
    alice = make_user()
    may_view_users = staff_client(make_user, "view_user", "change_user")
    assert choose_action(may_view_users, [alice]).status_code == 403
    assert choose_action(may_view_users, [alice], apply="1", title="x", level="info").status_code == 403
    assert not Notification.objects.exists()
    may_send = staff_client(make_user, "view_user", "change_user", "add_notification")
    assert choose_action(may_send, [alice]).status_code == 200


def test_a_broadcast_reaches_held_polls_live_and_records_how_many(server, admin_client, make_user, token_for):
    users = [make_user() for _ in range(3)]
    make_user(is_active=False)  # inactive users are left out
    tokens = [token_for(user) for user in users]
    cursors = [server.poll(token).json()["cursor"] for token in tokens]
    answers: list[list[str]] = []
    pollers = [
        threading.Thread(
            target=lambda t=t, c=c: answers.append(
                [n["title"] for n in server.poll(t, after=c, timeout=20).json()["notifications"]]
            )
        )
        for t, c in zip(tokens, cursors, strict=True)
    ]
    for poller in pollers:
        poller.start()

    reply = admin_client.post(
        "/admin/notify/broadcast/add/",
        {"title": "Release 2.0", "body": "", "level": "info", "url": "", "_confirm": "1"},  # to all: confirmed
    )
    for poller in pollers:
        poller.join(10)

    assert reply.status_code == 302
    assert answers == [["Release 2.0"]] * 3
    broadcast = Broadcast.objects.get()
    active = 3 + 1  # the three users and the admin who sent it
    assert broadcast.recipient_count == active and broadcast.sent_at is not None


def test_a_broadcast_to_groups_reaches_only_their_members(admin_client, make_user):
    team = Group.objects.create(name="team")
    alice, bob, outsider = make_user(), make_user(), make_user()
    team.user_set.add(alice, bob)
    reply = admin_client.post(
        "/admin/notify/broadcast/add/", {"title": "Team lunch", "level": "info", "groups": [team.pk]}
    )
    assert reply.status_code == 302
    assert sorted(Notification.objects.values_list("recipient_id", flat=True)) == sorted([alice.pk, bob.pk])
    assert Broadcast.objects.get().recipient_count == 2
    assert not outsider.notifications.exists()


def test_staff_without_the_broadcast_permission_get_403(make_user):
    client = staff_client(make_user, "view_broadcast")
    assert client.post("/admin/notify/broadcast/add/", {"title": "x", "level": "info"}).status_code == 403
    assert not Notification.objects.exists()


def test_a_sent_broadcast_is_a_record_that_cannot_be_edited_or_resent(admin_client, make_user):
    make_user()
    admin_client.post("/admin/notify/broadcast/add/", {"title": "Once", "level": "info", "_confirm": "1"})
    broadcast = Broadcast.objects.get()
    admin_client.post(f"/admin/notify/broadcast/{broadcast.pk}/change/", {"title": "Twice", "level": "info"})
    broadcast.refresh_from_db()
    assert broadcast.title == "Once"
    with pytest.raises(ValueError, match="already sent"):
        send_broadcast(broadcast)
    # Stored once for everyone (notify.announce), sent to every active user.
    assert Announcement.objects.filter(title="Once").count() == 1 and broadcast.recipient_count == 2


def test_a_broadcast_to_all_is_sent_only_once_confirmed_and_the_page_keeps_what_was_typed(admin_client, make_user):
    make_user()
    asked = admin_client.post(
        "/admin/notify/broadcast/add/", {"title": "Down <at> 22:00", "body": "a\nb", "level": "warning"}
    )
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "all 2 active users" in page  # the user and the admin
    assert 'value="Down &lt;at&gt; 22:00"' in page and 'value="a\nb"' in page and 'value="warning"' in page
    assert not Broadcast.objects.exists() and not Notification.objects.exists()


def test_an_unsent_broadcast_saved_again_asks_too_and_needs_the_send_permission(admin_client, make_user):
    draft = Broadcast.objects.create(title="Draft")  # made in code, not sent
    path = f"/admin/notify/broadcast/{draft.pk}/change/"
    assert admin_client.post(path, {"title": "Draft", "level": "info"}).status_code == 200  # the confirmation
    assert not Announcement.objects.exists()
    editor = staff_client(make_user, "view_broadcast", "change_broadcast")
    assert editor.post(path, {"title": "Draft", "level": "info", "_confirm": "1"}).status_code == 403
    assert not Announcement.objects.exists()
    assert admin_client.post(path, {"title": "Draft", "level": "info", "_confirm": "1"}).status_code == 302
    assert Broadcast.objects.get().recipient_count == 2 and Announcement.objects.count() == 1


def test_the_notification_change_form_shows_recipient_read_only_but_the_add_form_asks_for_it(admin_client, make_user):
    alice = make_user()
    [notification] = Notification.objects.bulk_create([Notification(recipient=alice, title="x")])
    change = admin_client.get(f"/admin/notify/notification/{notification.pk}/change/").content.decode()
    assert 'name="recipient"' not in change and alice.get_username() in change
    assert 'name="recipient"' in admin_client.get("/admin/notify/notification/add/").content.decode()


@pytest.mark.parametrize("where", ["send action", "broadcast", "demo send page"])
def test_a_notification_past_the_size_limit_is_a_form_error_not_a_500(where, admin_client, make_user, settings):
    """Staff surfaces refuse what notify.send() would refuse (MAX_NOTIFICATION_BYTES) with the
    form's own error, and send nothing."""
    settings.NOTIFY = {**settings.NOTIFY, "MAX_NOTIFICATION_BYTES": 1024}
    alice = make_user()
    body = "x" * 2000
    if where == "send action":
        reply = choose_action(admin_client, [alice], apply="1", title="Big", body=body, level="info")
    elif where == "broadcast":
        reply = admin_client.post(
            "/admin/notify/broadcast/add/", {"title": "Big", "body": body, "level": "info", "_confirm": "1"}
        )
    else:
        reply = admin_client.post(
            "/send/", {"recipient": alice.get_username(), "title": "Big", "body": body, "level": "info"}
        )
    assert reply.status_code == 200, reply.status_code
    assert b"MAX_NOTIFICATION_BYTES" in reply.content
    assert not Notification.objects.exists() and not Broadcast.objects.exists() and not Announcement.objects.exists()
