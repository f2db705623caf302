"""Per-user preferences (docs/preferences.md): which rule wins, what send() stores and the page
shows, quiet hours, and /notify/preferences over real HTTP against a real uvicorn."""

from __future__ import annotations

import datetime
import json
import zoneinfo
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import notify
from notify import preferences
from notify.models import EmailStatus, Notification, NotificationPreferences, PreferenceRule
from notify.preferences import Delivery, Preferences, Rule
from notify.scheduling import dispatch_due
from tests import threads
from tests.server import Server, expect_error, expect_page

EMAIL_ON = {"EMAIL_DIGESTS": True, "EMAIL_DELAY": {"info": 60, "success": 60, "warning": 60, "error": 60}}
PATH = "/notify/preferences"
PAGE_ONLY = Delivery(page=True, email=False)
EMAIL_ONLY = Delivery(page=False, email=True)
NOWHERE = Delivery(page=False, email=False)
EVERYWHERE = Delivery(page=True, email=True)


def notify_settings(**changes: Any) -> override_settings:
    from django.conf import settings

    return override_settings(NOTIFY={**settings.NOTIFY, **changes})


def rule(kind: str = "", level: str = "", page: bool = True, email: bool = True) -> Rule:
    return Rule(kind, level, Delivery(page=page, email=email))


# --- which rule wins -----------------------------------------------------------------------


@notify_settings(**EMAIL_ON)
@pytest.mark.parametrize(
    ("level", "kind", "expected"),
    [
        ("info", "billing.invoice", NOWHERE),  # "billing" covers its dotted descendants
        ("error", "billing.invoice", EMAIL_ONLY),  # kind and level beat kind alone
        ("error", "chat", PAGE_ONLY),  # no kind rule matches: the level rule
        ("info", "chat", EVERYWHERE),  # nothing matches: everywhere
        ("info", "billingx", EVERYWHERE),  # a prefix is not a parent kind
        ("warning", "billing", NOWHERE),  # the kind itself
        ("error", "", PAGE_ONLY),  # no kind: only rules without one apply
        ("error", "news", NOWHERE),  # a rule naming the kind beats one naming only the level
    ],
)
def test_the_most_specific_rule_wins_the_longest_kind_first(level, kind, expected):
    prefs = Preferences(
        user_id=1,
        rules=(
            rule(level="error", email=False),
            rule("billing", page=False, email=False),
            rule("billing", "error", page=False, email=True),
            rule("news", page=False, email=False),
        ),
        defaults=(),
    )
    assert prefs.delivery(level, kind) == expected


@notify_settings(
    **EMAIL_ON,
    DEFAULT_PREFERENCE_RULES=[{"kind": "marketing", "email": False}, {"level": "error", "page": True, "email": True}],
)
def test_the_projects_rules_apply_where_the_users_own_match_nothing():
    prefs = Preferences(user_id=1, rules=(rule("marketing", email=True),))
    assert prefs.delivery("info", "marketing.news") == EVERYWHERE  # the user's own rule wins
    assert Preferences(user_id=2).delivery("info", "marketing.news") == PAGE_ONLY
    assert Preferences(user_id=2).delivery("info", "chat") == EVERYWHERE


def test_no_email_while_digests_are_off_or_the_level_is_not_emailed_or_the_user_turned_email_off():
    prefs = Preferences(user_id=1, defaults=())
    assert prefs.delivery("error") == PAGE_ONLY  # EMAIL_DIGESTS is off by default
    with notify_settings(EMAIL_DIGESTS=True, EMAIL_DELAY={"error": 0, "info": None}):
        assert prefs.delivery("error") == EVERYWHERE
        assert prefs.delivery("info") == PAGE_ONLY  # None: never emailed
        assert prefs.delivery("warning") == PAGE_ONLY  # left out: never emailed
        assert Preferences(user_id=1, email_enabled=False, defaults=()).delivery("error") == PAGE_ONLY


# --- quiet hours -----------------------------------------------------------------------------

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def at(hour: int, minute: int = 0, day: int = 10) -> datetime.datetime:
    return datetime.datetime(2026, 12, day, hour, minute, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (at(23), at(7, day=11)),  # after the start: until tomorrow's end
        (at(3), at(7)),  # after midnight: until today's end
        (at(7), None),  # the end is not quiet
        (at(12), None),
        (at(22), at(7, day=11)),  # the start is quiet
    ],
)
def test_quiet_hours_across_midnight_in_the_users_time_zone(now, until):
    prefs = Preferences(
        user_id=1, quiet_start=datetime.time(22), quiet_end=datetime.time(7), timezone="Europe/Paris", defaults=()
    )
    assert prefs.quiet_until(now.astimezone(datetime.UTC)) == until


def test_quiet_hours_within_a_day_and_none_without_them():
    prefs = Preferences(user_id=1, quiet_start=datetime.time(9), quiet_end=datetime.time(17), timezone="Europe/Paris")
    assert prefs.quiet_until(at(10)) == at(17)
    assert prefs.quiet_until(at(17, 30)) is None
    assert Preferences(user_id=1).quiet_until(at(10)) is None


# --- what send() stores and the page shows ---------------------------------------------------------


@notify_settings(**EMAIL_ON)
def test_send_stores_nothing_for_whom_wants_it_nowhere_and_unnumbered_for_email_only(make_user):
    everywhere, page_only, email_only, nowhere = (make_user() for _ in range(4))
    preferences.set_rule(page_only, kind="chat", email=False)
    preferences.set_rule(email_only, kind="chat", page=False, email=True)
    preferences.set_rule(nowhere, kind="chat", page=False, email=False)

    sent = notify.send([everywhere, page_only, email_only, nowhere], "hi", kind="chat.message")

    assert {n.recipient_id: (n.page, n.email_status, n.seq is not None) for n in sent} == {
        everywhere.pk: (True, EmailStatus.PENDING, True),
        page_only.pk: (True, EmailStatus.NONE, True),
        email_only.pk: (False, EmailStatus.PENDING, False),
    }
    assert not Notification.objects.filter(recipient=nowhere).exists()
    # Another kind is not theirs to refuse.
    assert Notification.objects.filter(recipient=nowhere).count() == 0
    assert len(notify.send(nowhere, "invoice", kind="billing")) == 1


@notify_settings(**EMAIL_ON)
def test_an_email_only_notification_never_reaches_a_poll_or_the_unread_count(server, alice, token):
    preferences.set_rule(alice, kind="digest", page=False, email=True)
    start = server.poll(token).json()["cursor"]
    # Held, then the email-only one and an ordinary one, in that order: only the latter answers it.
    held = threads.start(server.poll, token, after=start, timeout=10)
    server.wait_for_held_polls(1)
    notify.send(alice, "by email only", kind="digest")
    notify.send(alice, "in the page", kind="chat")
    [answer] = threads.join_all([held])
    page = expect_page(answer, start, ["in the page"])
    assert page["unread_count"] == 1
    assert expect_page(server.poll(token, after=start, timeout=0), start, ["in the page"])["unread_count"] == 1
    history = server.request("GET", "/notify/history", headers={"Authorization": f"Bearer {token}"}).json()
    assert [n["title"] for n in history["notifications"]] == ["in the page"]
    assert history["unread_count"] == 1


@notify_settings(**EMAIL_ON)
def test_an_email_only_reminder_is_never_numbered_by_the_dispatcher(alice):
    preferences.set_rule(alice, page=False, email=True)
    [reminder] = notify.send(alice, "later", deliver_at=notify_now() + datetime.timedelta(minutes=5))
    Notification.objects.filter(pk=reminder.pk).update(deliver_at=notify_now() - datetime.timedelta(seconds=1))
    assert dispatch_due() == 0
    reminder.refresh_from_db()
    assert (reminder.seq, reminder.page, reminder.email_status) == (None, False, EmailStatus.PENDING)
    assert notify.reschedule(reminder, notify_now()) is False  # not a reminder of the page's to move


def notify_now() -> datetime.datetime:
    from django.utils import timezone

    return timezone.now()


def test_preferences_of_a_thousand_recipients_cost_a_query_per_five_hundred_and_two_more_where_chosen(
    make_user, django_user_model
):
    users = django_user_model.objects.bulk_create(
        django_user_model(username=f"many-{i}", password="!") for i in range(1000)
    )

    def asked() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            sent = notify.send(users, "hello", kind="chat")
        tables = ("notify_preferencerule", "notify_notificationpreferences")
        return [q["sql"] for q in queries if any(table in q["sql"] for table in tables)], sent

    queries, sent = asked()
    assert len(queries) == 2 and len(sent) == 1000, queries  # nobody chose anything: one per 500
    preferences.set_rule(users[0], kind="chat", page=False, email=False)
    queries, sent = asked()
    assert len(queries) == 3 and len(sent) == 999, queries  # and the rules of the 500 with a chooser


# --- changing them in Python ---------------------------------------------------------------------


def test_set_rule_refuses_what_is_not_a_kind_or_level_and_counts_against_the_limit(alice):
    with pytest.raises(ValueError, match="a kind is"):
        preferences.set_rule(alice, kind="Not A Kind")
    with pytest.raises(ValueError, match="Unsupported level 'loud'"):
        preferences.set_rule(alice, level="loud")
    with notify_settings(MAX_PREFERENCE_RULES=2):
        preferences.set_rule(alice, kind="a")
        preferences.set_rule(alice, kind="b")
        preferences.set_rule(alice, kind="b", email=False)  # a change is not one more
        with pytest.raises(ValueError, match="has 2 preference rules"):
            preferences.set_rule(alice, kind="c")
    assert preferences.preferences_for(alice).rules == (rule("a"), rule("b", email=False))
    assert preferences.remove_rule(alice, kind="a") is True
    assert preferences.remove_rule(alice, kind="a") is False


def test_a_refused_list_of_rules_changes_nothing(alice):
    preferences.replace_rules(alice, [rule("chat", email=False)])
    with pytest.raises(ValueError, match="Two rules for kind 'x'"):
        preferences.replace_rules(alice, [rule("x"), rule("y"), rule("x", page=False)])
    assert preferences.preferences_for(alice).rules == (rule("chat", email=False),)


# --- /notify/preferences over HTTP ------------------------------------------------------------------


def call(server: Server, method: str, token: str | None, body: Any = None, **headers: str):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.request(method, PATH, headers=headers, body=data)


def test_get_answers_the_defaults_and_post_changes_what_it_names(server, alice, token):
    reply = call(server, "GET", token)
    assert reply.status == 200 and reply.headers["cache-control"] == "no-store"
    assert reply.json() == {
        "email_enabled": True,
        "quiet_hours": None,
        "timezone": "",
        "rules": [],
        "email_available": False,
        "levels": ["info", "success", "warning", "error"],
        "kinds": [  # the demo's NOTIFY["PREFERENCE_KINDS"]
            {"kind": "message", "label": "Messages from staff (the Send page)"},
            {"kind": "reminder", "label": "Your reminders"},
            {"kind": "task", "label": "Tasks assigned to you"},
        ],
    }
    change = {
        "quiet_hours": {"start": "22:30", "end": "07:00"},
        "timezone": "Europe/Paris",
        "rules": [{"kind": "chat", "level": "", "page": True, "email": False}, {"level": "error", "page": False}],
    }
    changed = call(server, "POST", token, change).json()
    assert changed["quiet_hours"] == {"start": "22:30", "end": "07:00"}
    assert changed["rules"] == [
        {"kind": "", "level": "error", "page": False, "email": True},
        {"kind": "chat", "level": "", "page": True, "email": False},
    ]
    assert call(server, "POST", token, {"email_enabled": False}).json()["rules"] == changed["rules"]
    stored = preferences.preferences_for(alice)
    assert (stored.email_enabled, stored.quiet_start, stored.timezone) == (False, datetime.time(22, 30), "Europe/Paris")
    # And send() follows them at once.
    assert notify.send(alice, "boom", level="error") == []
    assert call(server, "POST", token, {"rules": [], "quiet_hours": None}).json()["rules"] == []
    assert len(notify.send(alice, "boom", level="error")) == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "JSON"),
        ([], "non-empty JSON object"),
        ({}, "non-empty JSON object"),
        ({"colour": "red"}, "Unknown key 'colour'"),
        ({"email_enabled": "no"}, "email_enabled must be true or false"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours must be"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start must be a time"),
        ({"quiet_hours": {"start": "7", "end": "07:00"}}, "quiet_hours.start must be a time"),
        ({"timezone": "Mars/Olympus"}, "Unknown time zone 'Mars/Olympus'"),
        ({"timezone": 3}, "timezone must be a string"),
        ({"rules": {"kind": "chat"}}, "rules must be a list"),
        ({"rules": [{"kind": "chat", "sms": True}]}, "only the keys kind, level, page and email"),
        ({"rules": [{"kind": "Chat Room"}]}, "a kind is"),
        ({"rules": [{"level": "loud"}]}, "Unsupported level 'loud'"),
        ({"rules": [{"kind": "chat", "page": "yes"}]}, "page and email must be true or false"),
        ({"rules": [{"kind": "x"}, {"kind": "x"}]}, "Two rules for kind 'x'"),
        ({"rules": [[[[[[[]]]]]]]}, "deep"),
    ],
)
def test_post_refuses_bad_input_saying_what_is_accepted_and_changes_nothing(server, alice, token, body, says):
    preferences.set_rule(alice, kind="kept")
    reply = call(server, "POST", token, body)
    detail = expect_error(reply, 400, reply.json()["error"])["detail"]
    assert says in detail, detail
    assert preferences.preferences_for(alice).rules == (rule("kept"),)


def test_post_refuses_more_rules_than_the_limit(server, alice, token):
    from notify.conf import conf

    rules = [{"kind": f"k{i}"} for i in range(conf.MAX_PREFERENCE_RULES + 1)]
    body = expect_error(call(server, "POST", token, {"rules": rules}), 400, "too_many_rules")
    assert f"at most {conf.MAX_PREFERENCE_RULES}" in body["detail"]
    assert not PreferenceRule.objects.exists()


def test_changes_past_the_limit_a_minute_get_429_and_reads_and_refused_bodies_cost_nothing(make_user, token_for):
    alice = make_user()
    token = token_for(alice)
    limited = Server(env={"NOTIFY_MAX_PREFERENCE_CHANGES_PER_MINUTE": "2"}).start()
    try:
        for _ in range(3):
            assert call(limited, "GET", token).status == 200
        expect_error(call(limited, "POST", token, {"colour": "red"}), 400, "invalid_body")
        assert call(limited, "POST", token, {"email_enabled": False}).status == 200
        assert call(limited, "POST", token, {"email_enabled": True}).status == 200
        body = expect_error(call(limited, "POST", token, {"email_enabled": False}), 429, "too_many_changes")
        assert "At most 2 changes of preferences a minute" in body["detail"]
        assert preferences.preferences_for(alice).email_enabled is True
    finally:
        limited.stop()


def test_a_body_past_django_s_upload_limit_gets_413_and_changes_nothing(server, alice, token):
    rules = b'{"rules": [' + b'{"kind": "k"},' * 200_000 + b'{"kind": "k"}]}'  # about 2.8 MB, above Django's 2.5 MB
    body = expect_error(call(server, "POST", token, rules), 413, "too_large")
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in body["detail"]
    assert not PreferenceRule.objects.exists()


def test_without_credentials_401_and_other_methods_405(server):
    expect_error(call(server, "GET", None), 401, "not_authenticated")
    expect_error(call(server, "POST", None, {"email_enabled": False}), 401, "not_authenticated")
    reply = call(server, "DELETE", None)
    assert expect_error(reply, 405, "method_not_allowed") and reply.headers["allow"] == "GET, POST"


def test_a_session_reads_and_needs_the_csrf_token_to_change(server, alice, session_cookie):
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    cookies = session_cookie(alice)
    assert call(server, "GET", None, Cookie=cookies).json()["email_enabled"] is True
    expect_error(call(server, "POST", None, {"email_enabled": False}, Cookie=cookies), 403, "csrf_failed")
    assert not NotificationPreferences.objects.exists()
    secret = _get_new_csrf_string()
    reply = call(
        server,
        "POST",
        None,
        {"email_enabled": False},
        Cookie=f"{cookies}; csrftoken={secret}",
        **{"X-CSRFToken": _mask_cipher_secret(secret)},
    )
    assert reply.json()["email_enabled"] is False


# --- the admin and the checks ---------------------------------------------------------------------


def test_the_admin_edits_rules_beside_the_preferences_but_never_whose_they_are(admin_client, alice, make_user):
    preferences.set_rule(alice, kind="chat")
    prefs = NotificationPreferences.objects.get(user=alice)
    url = f"/admin/notify/notificationpreferences/{alice.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b"rules-0-kind" in page.content
    other = make_user()
    form = {
        "user": other.pk,  # refused silently: read-only once created
        "email_enabled": "",
        "quiet_start": "22:00",
        "quiet_end": "06:00",
        "timezone": "Europe/Paris",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "1",
        "rules-0-id": prefs.rules.get().pk,
        "rules-0-preferences": alice.pk,
        "rules-0-kind": "chat",
        "rules-0-level": "error",
        "rules-0-email": "on",
    }
    assert admin_client.post(url, form).status_code == 302
    stored = preferences.preferences_for(alice)
    assert (stored.email_enabled, stored.quiet_end, stored.rules) == (
        False,
        datetime.time(6),
        (rule("chat", "error", page=False, email=True),),
    )
    assert not NotificationPreferences.objects.filter(user=other).exists()
    refused = admin_client.post(url, {**form, "timezone": "Mars/Olympus", "quiet_end": ""})
    assert refused.status_code == 200
    assert b"Unknown time zone" in refused.content and b"both a start and an end" in refused.content
    assert preferences.preferences_for(alice).timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"MAX_PREFERENCE_RULES": 0}, "notify.E032"),
        ({"MAX_PREFERENCE_RULES": 10**6}, "notify.E032"),
        ({"DEFAULT_PREFERENCE_RULES": {"kind": ""}}, "notify.E033"),
        ({"DEFAULT_PREFERENCE_RULES": [{"kind": "Bad Kind"}]}, "notify.E033"),
        ({"DEFAULT_PREFERENCE_RULES": [{"level": "loud"}]}, "notify.E033"),
        ({"DEFAULT_PREFERENCE_RULES": [{"sms": True}]}, "notify.E033"),
        ({"DEFAULT_PREFERENCE_RULES": [{"page": "yes"}]}, "notify.E033"),
        ({"PREFERENCE_KINDS": ["chat"]}, "notify.E034"),
        ({"PREFERENCE_KINDS": {"Chat": "Chat"}}, "notify.E034"),
    ],
)
def test_checks_refuse_preference_settings_of_the_wrong_shape(changes, check):
    with notify_settings(**changes):
        assert check in [problem.id for problem in run_checks()]


def test_checks_accept_preference_settings_of_the_right_shape():
    good = {
        "MAX_PREFERENCE_RULES": 20,
        "DEFAULT_PREFERENCE_RULES": [{"kind": "marketing", "level": "", "page": True, "email": False}],
        "PREFERENCE_KINDS": {"chat": "Chat messages", "billing.invoice": "Invoices"},
    }
    with notify_settings(**good):
        assert not [p for p in run_checks() if p.id in ("notify.E032", "notify.E033", "notify.E034")]


# --- the demo's page (the browser's side: tests/browser/test_preferences.py) ----------------------


def demo_form(**changes: str) -> dict[str, str]:
    from project.demo.preferences import field_name, rows

    form = {field_name(channel, kind, level): "on" for kind, level, _ in rows() for channel in ("page", "email")}
    return {**form, "email_enabled": "on", "timezone": "", **changes}


def test_the_demo_page_stores_only_rows_that_differ_from_everything_else(client, alice):
    client.force_login(alice)
    assert client.get("/preferences/").status_code == 200
    with notify_settings(**EMAIL_ON):
        # Email ticked only for tasks and errors (an unticked box is not sent), tasks not in the page.
        form = {name: on for name, on in demo_form().items() if not name.startswith("email:")}
        form.update({"email:task:": "on", "email::error": "on"})
        form.pop("page:task:")
        assert client.post("/preferences/", form).status_code == 302
    assert preferences.preferences_for(alice).rules == (
        rule(email=False),
        rule("", "error", email=True),
        rule("task", page=False, email=True),
    )


def test_without_email_digests_the_demo_page_keeps_the_email_choices_as_they_are(client, alice):
    preferences.set_rule(alice, kind="task", page=True, email=False)
    client.force_login(alice)
    form = demo_form()
    form.pop("page:message:")  # and every email box ticked: ignored, email is off on this site
    assert client.post("/preferences/", form).status_code == 302
    assert preferences.preferences_for(alice).rules == (
        rule("message", page=False, email=True),
        rule("task", email=False),
    )


def test_the_demo_page_refuses_half_quiet_hours_and_an_unknown_zone_and_changes_nothing(client, alice):
    client.force_login(alice)
    with notify_settings(**EMAIL_ON):
        reply = client.post("/preferences/", demo_form(quiet_start="22:00", timezone="Mars/Olympus"))
    assert reply.status_code == 200
    assert b"both a start and an end" in reply.content and b"Select a valid choice" in reply.content
    assert not NotificationPreferences.objects.exists()
