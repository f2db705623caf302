"""The history API (docs/history.md) and the notification's kind, over real HTTP against a real uvicorn."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

import notify
from notify.history import Filters, ListParams, page
from notify.models import Notification
from tests import threads
from tests.server import Server, expect_error, expect_page

HISTORY = "/notify/history"
ENDPOINTS = [
    ("GET", HISTORY),
    ("GET", f"{HISTORY}/unread_count"),
    ("POST", f"{HISTORY}/read"),
    ("POST", f"{HISTORY}/unread"),
    ("POST", f"{HISTORY}/delete"),
]


def get(server: Server, token: str | None, path: str = HISTORY, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return server.request("GET", path, params=params, headers=headers)


def post(server: Server, action: str, body: Any, *, token: str | None = None, cookies: str | None = None, csrf=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookies:
        headers["Cookie"] = cookies
    if csrf:
        headers["X-CSRFToken"] = csrf
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.request("POST", f"{HISTORY}/{action}", headers=headers, body=data)


def listed(server: Server, token: str, **params: Any) -> dict[str, Any]:
    reply = get(server, token, **params)
    assert reply.status == 200, reply.body[:500]
    assert reply.headers["cache-control"] == "no-store"
    return reply.json()


def titles(page: dict[str, Any]) -> list[str]:
    return [n["title"] for n in page["notifications"]]


def chain(server: Server, token: str, between=None, **params: Any) -> list[dict[str, Any]]:
    """Every page from the newest on, following ``next``; ``between(n)`` runs before page n+1."""
    pages, before = [], None
    while True:
        page = listed(server, token, **params, **({"before": before} if before else {}))
        pages.append(page)
        before = page["next"]
        if before is None:
            return pages
        assert len(pages) < 100, "the chain does not end"
        if between is not None:
            between(len(pages))


# --- kind --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Billing", "billing invoice", "-x", ".x", "x" * 51, "é", "a/b", "a\x00"])
def test_send_refuses_a_kind_outside_the_rule_saying_the_rule(alice, kind):
    with pytest.raises(ValueError, match="a kind is 1 to 50 characters of a-z"):
        notify.send(alice, "t", kind=kind)
    assert not Notification.objects.exists()


@pytest.mark.parametrize("kind", [None, 3, b"billing"])
def test_send_refuses_a_kind_that_is_not_a_string(alice, kind):
    with pytest.raises(TypeError, match="kind must be a string"):
        notify.send(alice, "t", kind=kind)


@pytest.mark.parametrize("kind", ["", "billing", "billing.invoice", "build-failed_2", "x" * 50, "0"])
async def test_send_and_asend_store_a_kind_within_the_rule(alice, kind):
    [sent] = await notify.asend(alice, "t", kind=kind)
    assert (await Notification.objects.aget(pk=sent.pk)).kind == kind
    assert sent.as_dict()["kind"] == kind


# --- listing -----------------------------------------------------------------------------


def test_the_list_is_newest_first_with_its_count_and_no_next_on_the_last_page(server, alice, token):
    for title in ("a", "b", "c"):
        notify.send(alice, title, kind="k", level="warning")
    page = listed(server, token)
    assert titles(page) == ["c", "b", "a"]
    assert page["next"] is None and page["unread_count"] == 3
    first = page["notifications"][0]
    assert set(first) == {"id", "title", "body", "level", "kind", "url", "data", "created_at", "read", "group"}
    assert (first["kind"], first["level"], first["read"]) == ("k", "warning", False)


def test_a_page_chain_has_every_notification_once_while_others_are_sent_and_deleted(server, alice, token):
    sent = [notify.send(alice, f"n{i}")[0] for i in range(23)]
    deleted_ahead = sent[2]  # deleted before its page is read: never listed

    def meanwhile(pages_read: int) -> None:
        notify.send(alice, f"new{pages_read}")  # newer than the chain's start: not in it
        if pages_read == 1:
            assert post(server, "delete", {"ids": [deleted_ahead.pk, sent[-1].pk]}, token=token).json()["deleted"] == 2

    pages = chain(server, token, between=meanwhile, limit=5)

    ids = [n["id"] for page in pages for n in page["notifications"]]
    assert len(ids) == len(set(ids)), "a notification was listed twice"
    expected = [n.pk for n in reversed(sent) if n.pk != deleted_ahead.pk]
    assert ids == expected, "lost, repeated or out of order"
    assert [len(page["notifications"]) for page in pages] == [5, 5, 5, 5, 2]


def test_filters_unread_level_and_kind_combine(server, alice, token):
    notify.send(alice, "invoice", kind="billing.invoice", level="info")
    notify.send(alice, "refund", kind="billing.refund", level="success")
    notify.send(alice, "build", kind="ci", level="error")
    notify.send(alice, "plain", level="warning")
    alice.notifications.filter(title="refund").update(read_at=timezone.now())

    assert titles(listed(server, token, unread="true")) == ["plain", "build", "invoice"]
    assert titles(listed(server, token, unread="false")) == ["refund"]
    assert titles(listed(server, token, level="error,warning")) == ["plain", "build"]
    assert titles(listed(server, token, kind="billing.invoice,billing.refund")) == ["refund", "invoice"]
    assert titles(listed(server, token, kind="ci", level="info")) == []
    assert titles(listed(server, token, kind="billing.invoice,ci", unread="1", level="info,error")) == [
        "build",
        "invoice",
    ]
    # A filtered chain pages as the whole list does.
    pages = chain(server, token, kind="billing.invoice,billing.refund,ci", limit=1)
    assert [titles(page) for page in pages] == [["build"], ["refund"], ["invoice"]]


def test_reminders_not_yet_due_are_neither_listed_nor_changed(server, alice, token):
    [later] = notify.send(alice, "later", deliver_at=timezone.now() + datetime.timedelta(hours=1))
    notify.send(alice, "now")
    assert titles(listed(server, token)) == ["now"]
    assert post(server, "delete", {"ids": [later.pk]}, token=token).json() == {"deleted": 0, "unread_count": 1}
    assert post(server, "read", {"ids": [later.pk]}, token=token).json()["updated"] == 0
    assert Notification.objects.filter(pk=later.pk, read_at=None).exists()


def test_a_page_stops_at_max_answer_bytes_and_goes_on_from_there(alice):
    for i in range(6):
        notify.send(alice, f"n{i}", "x" * 1400)  # three fit in 5,000 bytes, not four
    with override_settings(NOTIFY={**settings.NOTIFY, "MAX_ANSWER_BYTES": 5000}):
        first = page(alice.pk, ListParams(before=None, limit=20, filters=Filters()))
        assert titles(first) == ["n5", "n4", "n3"]
        second = page(alice.pk, ListParams(before=int(first["next"]), limit=20, filters=Filters()))
        assert titles(second) == ["n2", "n1", "n0"]
        assert second["next"] is None


# --- read, unread, count, and what polls answer -----------------------------------------------


def test_read_and_unread_change_the_count_and_what_a_poll_without_cursor_answers(server, alice, token):
    a, b, c = (notify.send(alice, t)[0] for t in "abc")

    reply = post(server, "read", {"ids": [a.pk, c.pk]}, token=token)
    assert reply.status == 200 and reply.json() == {"updated": 2, "unread_count": 1}
    assert get(server, token, f"{HISTORY}/unread_count").json() == {"unread_count": 1}
    expect_page(server.poll(token), "0", ["b"])
    assert [n["read"] for n in listed(server, token)["notifications"]] == [True, False, True]

    reply = post(server, "unread", {"ids": [a.pk, b.pk]}, token=token)  # b was unread already
    assert reply.json() == {"updated": 1, "unread_count": 2}
    snapshot = expect_page(server.poll(token), "0", ["a", "b"])
    assert snapshot["unread_count"] == 2

    assert post(server, "read", {"all": True}, token=token).json() == {"updated": 2, "unread_count": 0}
    assert server.poll(token).json()["notifications"] == []


def test_a_held_poll_answers_with_the_unread_count_after_marks(server, alice, token):
    [a] = notify.send(alice, "a")
    cursor = server.poll(token).json()["cursor"]
    post(server, "read", {"ids": [a.pk]}, token=token)
    results: list[Any] = []
    held = threads.start(lambda: results.append(server.poll(token, after=cursor, timeout=20)))
    server.wait_for_held_polls(1, alice.pk)
    notify.send(alice, "b")
    held.join(20)
    assert expect_page(results[0], cursor, ["b"])["unread_count"] == 1


# --- delete and the poll's cursor ------------------------------------------------------------


def test_deleting_rows_past_a_cursor_leaves_it_valid_without_duplicates(server, alice, token):
    cursor = server.poll(token).json()["cursor"]
    a, b, c = (notify.send(alice, t)[0] for t in "abc")
    assert post(server, "delete", {"ids": [a.pk, b.pk]}, token=token).json() == {"deleted": 2, "unread_count": 1}

    page = expect_page(server.poll(token, after=cursor, timeout=0), cursor, ["c"])
    # Deleting the newest: its cursor is still this user's, not "ahead" of the stream (400).
    assert post(server, "delete", {"ids": [c.pk]}, token=token).json() == {"deleted": 1, "unread_count": 0}
    expect_page(server.poll(token, after=page["cursor"], timeout=0), page["cursor"])
    # From before them all: nothing, and the cursor moves past the deleted rows (to the head),
    # so that the next poll does not look past it again.
    expect_page(server.poll(token, after=cursor, timeout=0), page["cursor"])
    assert listed(server, token)["notifications"] == []


def test_a_poll_held_past_deleted_rows_answers_the_next_notification_once(server, alice, token):
    cursor = server.poll(token).json()["cursor"]
    [gone] = notify.send(alice, "gone")
    post(server, "delete", {"ids": [gone.pk]}, token=token)
    results: list[Any] = []
    held = threads.start(lambda: results.append(server.poll(token, after=cursor, timeout=20)))
    server.wait_for_held_polls(1, alice.pk)  # held: every row past its cursor is deleted

    notify.send(alice, "next")  # its message does not continue the cursor: read from the database
    held.join(20)

    page = expect_page(results[0], cursor, ["next"])
    expect_page(server.poll(token, after=page["cursor"], timeout=0), page["cursor"])


def test_deleting_what_a_held_poll_waits_past_does_not_wake_or_break_it(server, alice, token):
    [old] = notify.send(alice, "old")
    cursor = server.poll(token).json()["cursor"]
    results: list[Any] = []
    held = threads.start(lambda: results.append(server.poll(token, after=cursor, timeout=0.5)))
    server.wait_for_held_polls(1, alice.pk)
    assert post(server, "delete", {"ids": [old.pk]}, token=token).json()["deleted"] == 1
    held.join(20)
    expect_page(results[0], cursor)


# --- who may do what ---------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_answers_401_without_credentials(server, method, path):
    reply = server.request(method, path, body=b'{"ids": [1]}' if method == "POST" else None)
    expect_error(reply, 401, "not_authenticated")
    bad = server.request(method, path, headers={"Authorization": "Bearer ntf_0123456789abcdef_nope"})
    expect_error(bad, 401, "not_authenticated")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_answers_405_to_another_method(server, token, method, path):
    other = "DELETE" if method == "GET" else "GET"
    reply = server.request(other, path, headers={"Authorization": f"Bearer {token}"})
    expect_error(reply, 405, "method_not_allowed")
    assert reply.headers["allow"] == method


def test_another_users_ids_are_neither_listed_nor_touched(server, make_user, token_for):
    alice, bob = make_user(), make_user()
    [hers] = notify.send(alice, "alice's")
    bob_token = token_for(bob)
    assert listed(server, bob_token)["notifications"] == []
    for action, changed in (("read", "updated"), ("unread", "updated"), ("delete", "deleted")):
        reply = post(server, action, {"ids": [hers.pk]}, token=bob_token)
        assert reply.status == 200 and reply.json()[changed] == 0, (action, reply.body)
    assert Notification.objects.filter(pk=hers.pk, read_at=None).exists()
    assert post(server, "read", {"all": True}, token=bob_token).json()["updated"] == 0
    assert Notification.objects.filter(pk=hers.pk, read_at=None).exists()


def test_a_session_lists_and_needs_the_csrf_token_to_change(server, alice, session_cookie):
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    [a] = notify.send(alice, "a")
    cookies = session_cookie(alice)
    reply = server.request("GET", HISTORY, headers={"Cookie": cookies})
    assert reply.status == 200 and titles(reply.json()) == ["a"]
    for action in ("read", "unread", "delete"):
        expect_error(post(server, action, {"ids": [a.pk]}, cookies=cookies), 403, "csrf_failed")
    assert Notification.objects.filter(pk=a.pk, read_at=None).exists()

    secret = _get_new_csrf_string()
    with_csrf = {"cookies": f"{cookies}; csrftoken={secret}", "csrf": _mask_cipher_secret(secret)}
    assert post(server, "delete", {"ids": [a.pk]}, **with_csrf).json() == {"deleted": 1, "unread_count": 0}


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code", "says"),
    [
        ({"before": "abc"}, "invalid_cursor", "'before' must be the 'next' cursor"),
        ({"before": "1" * 19}, "invalid_cursor", "'before'"),
        ({"limit": "0"}, "invalid_limit", "from 1 to 100"),
        ({"limit": "101"}, "invalid_limit", "from 1 to 100"),
        ({"limit": "²"}, "invalid_limit", "from 1 to 100"),
        ({"unread": "maybe"}, "invalid_filter", "'unread' must be true or false"),
        ({"level": "fatal"}, "invalid_filter", "info, success, warning, error"),
        ({"level": "info,"}, "invalid_filter", "'level'"),
        ({"kind": "Billing"}, "invalid_filter", "a-z, 0-9"),
        ({"kind": ",".join(f"k{i}" for i in range(11))}, "invalid_filter", "at most 10 kinds"),
        ({"kind": "x" * 51}, "invalid_filter", "1 to 50 characters"),
    ],
)
def test_bad_list_parameters_get_400_saying_what_is_accepted(server, token, params, code, says):
    body = expect_error(get(server, token, **params), 400, code)
    assert says in body["detail"], body


@pytest.mark.parametrize("action", ["read", "unread", "delete"])
@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", b'{"ids": "1"}', b'{"ids": [1, "2"]}', b'{"ids": [0]}', b'{"ids": [1.5]}', b"{}", b"\xff"],
)
def test_bad_bodies_get_400(server, token, action, body):
    assert expect_error(
        post(server, action, body, token=token), 400, "invalid_body" if body[:1] in b"[{" else "invalid_json"
    )


@pytest.mark.parametrize("action", ["unread", "delete"])
def test_all_is_only_for_read(server, alice, token, action):
    notify.send(alice, "kept")
    body = expect_error(post(server, action, {"all": True}, token=token), 400, "invalid_body")
    assert '{"ids": [<notification id>, ...]}' in body["detail"]
    assert Notification.objects.filter(recipient=alice).count() == 1


def test_more_than_a_thousand_ids_get_400_and_change_nothing(server, alice, token):
    [a] = notify.send(alice, "a")
    body = expect_error(post(server, "delete", {"ids": [a.pk] * 1001}, token=token), 400, "invalid_body")
    assert "At most 1000 ids" in body["detail"]
    assert Notification.objects.filter(pk=a.pk).exists()


def test_an_oversized_body_gets_413(server, token):
    body = b'{"ids": [' + b"1," * 1_400_000 + b"1]}"  # about 2.8 MB, above Django's 2.5 MB
    expect_error(post(server, "delete", body, token=token), 413, "too_large")
