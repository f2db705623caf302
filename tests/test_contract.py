"""The HTTP contract of README, checked over real HTTP against a real uvicorn."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import notify
from tests import threads
from tests.server import expect_error, expect_page


def send_later(delay: float, *args, **kwargs) -> threading.Thread:
    return threads.start(notify.send, *args, delay=delay, **kwargs)


def test_first_poll_returns_newest_unread_oldest_first_and_the_current_cursor(server, alice, token):
    for i in range(5):
        notify.send(alice, f"n{i}")
    alice.notifications.filter(title="n4").update(read_at="2026-01-01T00:00:00Z")

    reply = server.poll(token, limit=3)

    assert reply.status == 200
    page = reply.json()
    assert [n["title"] for n in page["notifications"]] == ["n1", "n2", "n3"]
    assert page["unread_count"] == 4
    # The cursor is the head of the stream, past the read n4: only new ones come next.
    assert server.poll(token, after=page["cursor"], timeout=0).json()["notifications"] == []


def test_poll_with_pending_notifications_answers_at_once_oldest_first(server, alice, token):
    cursor = server.poll(token).json()["cursor"]
    notify.send(alice, "first", "body", level="warning", kind="build.failed", url="/x", data={"k": [1]})
    notify.send(alice, "second")

    started = time.monotonic()
    page = server.poll(token, after=cursor, timeout=20).json()

    assert time.monotonic() - started < 5
    first, second = page["notifications"]
    assert (first["title"], second["title"]) == ("first", "second")
    assert first["body"] == "body" and first["level"] == "warning" and first["url"] == "/x"
    assert first["data"] == {"k": [1]} and first["read"] is False and first["created_at"]
    assert first["kind"] == "build.failed" and second["kind"] == ""
    assert set(first) == {"id", "title", "body", "level", "kind", "url", "data", "created_at", "read", "group"}
    assert page["unread_count"] == 2


def test_poll_held_until_notification_committed(server, alice, token):
    cursor = server.poll(token).json()["cursor"]
    send_later(0.5, alice, "wake up")

    started = time.monotonic()
    page = server.poll(token, after=cursor, timeout=20).json()
    elapsed = time.monotonic() - started

    assert [n["title"] for n in page["notifications"]] == ["wake up"]
    assert 0.4 < elapsed < 5  # held, then answered as soon as it was sent


def test_timeout_answers_empty_with_the_same_cursor(server, alice, token):
    cursor = server.poll(token).json()["cursor"]
    started = time.monotonic()
    reply = server.poll(token, after=cursor, timeout=1)
    assert 0.9 < time.monotonic() - started < 5
    assert reply.status == 200
    assert reply.json() == {"cursor": cursor, "notifications": [], "unread_count": 0}


def test_limit_pages_through_a_backlog_oldest_first(server, alice, token):
    cursor = server.poll(token).json()["cursor"]
    notify.send(alice, "a"), notify.send(alice, "b"), notify.send(alice, "c")
    first = server.poll(token, after=cursor, limit=2).json()
    second = server.poll(token, after=first["cursor"], limit=2).json()
    assert [n["title"] for n in first["notifications"]] == ["a", "b"]
    assert [n["title"] for n in second["notifications"]] == ["c"]


def test_answers_are_not_cacheable(server, token):
    assert server.poll(token).headers["cache-control"] == "no-store"
    assert server.poll(token, after=0, timeout=0).headers["cache-control"] == "no-store"
    assert server.poll(token, timeout="x").headers["cache-control"] == "no-store"


def test_session_authenticates_a_poll(server, alice, session_cookie):
    notify.send(alice, "by session")
    page = server.poll(cookies=session_cookie(alice)).json()
    assert [n["title"] for n in page["notifications"]] == ["by session"]


def test_a_poll_returns_only_the_callers_notifications(server, make_user, token_for):
    alice, bob = make_user(), make_user()
    notify.send(alice, "for alice")
    notify.send(bob, "for bob")
    assert [n["title"] for n in server.poll(token_for(bob)).json()["notifications"]] == ["for bob"]


def test_unknown_parameters_are_ignored(server, alice, token):
    notify.send(alice, "one")
    page = server.poll(token, colour="blue").json()
    assert [n["title"] for n in page["notifications"]] == ["one"]
    expect_page(server.poll(token, after=page["cursor"], timeout=0, colour="blue"), page["cursor"])


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"timeout": "-1"}, "invalid_timeout"),
        ({"timeout": "nan"}, "invalid_timeout"),
        ({"timeout": "soon"}, "invalid_timeout"),
        ({"timeout": "1e3"}, "invalid_timeout"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "101"}, "invalid_limit"),
        ({"limit": "ten"}, "invalid_limit"),
        ({"limit": "٥"}, "invalid_limit"),  # a digit to Python's int(), not to us
        ({"after": "abc"}, "invalid_cursor"),
        ({"after": "-1"}, "invalid_cursor"),
        ({"after": "9" * 40}, "invalid_cursor"),
    ],
)
def test_bad_parameters_get_400_saying_what_is_accepted(server, token, params, code):
    reply = server.poll(token, **params)
    assert reply.status == 400
    body = reply.json()
    assert body["error"] == code
    assert "must" in body["detail"]


def test_a_cursor_ahead_of_the_stream_is_400(server, alice, token):
    notify.send(alice, "one")
    reply = server.poll(token, after=5, timeout=1)
    expect_error(reply, 400, "invalid_cursor")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer ntf_0000000000000000_nope"},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
    ],
)
def test_anonymous_or_bad_token_gets_401_json_never_a_redirect(server, headers):
    reply = server.request("GET", "/notify/poll", headers=headers)
    assert reply.status == 401
    assert reply.json()["error"] == "not_authenticated"
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_a_revoked_token_gets_401(server, alice, token):
    from notify.models import ApiToken

    assert server.poll(token).status == 200
    ApiToken.objects.get(user=alice).revoke()
    expect_error(server.poll(token), 401, "not_authenticated")


def test_a_held_poll_after_a_revocation_gets_401_though_the_worker_trusted_the_token(server, alice, token):
    from notify.models import ApiToken

    cursor = server.poll(token).json()["cursor"]
    for _ in range(3):  # verified once, then trusted by the worker (notify.auth)
        expect_page(server.poll(token, after=cursor, timeout=0.2), cursor)
    ApiToken.objects.get(user=alice).revoke()  # heard by the worker on its auth channel
    expect_error(server.poll(token, after=cursor, timeout=5), 401, "not_authenticated")


def test_a_trusted_tokens_held_poll_gets_401_when_the_token_is_revoked_while_it_is_held(server, alice, token):
    from notify.models import ApiToken

    cursor = server.poll(token).json()["cursor"]
    for _ in range(3):  # verified once, then trusted by the worker (notify.auth)
        expect_page(server.poll(token, after=cursor, timeout=0.2), cursor)
    held = []
    poller = threads.start(lambda: held.append(server.poll(token, after=cursor, timeout=20)))
    server.wait_for_held_polls(1, alice.pk)  # subscribed, checked (trusted: no look-up), waiting
    started = time.monotonic()
    ApiToken.objects.get(user=alice).revoke()
    poller.join(10)
    assert "held" in expect_error(held[0], 401, "not_authenticated")["detail"]
    assert time.monotonic() - started < 3


def test_a_held_poll_after_a_password_change_gets_401_for_the_old_session(server, alice, session_cookie):
    cookie = session_cookie(alice)
    cursor = server.poll(cookies=cookie).json()["cursor"]
    for _ in range(3):
        expect_page(server.poll(cookies=cookie, after=cursor, timeout=0.2), cursor)
    alice.set_password("another one")
    alice.save()
    expect_error(server.poll(cookies=cookie, after=cursor, timeout=5), 401, "not_authenticated")


def test_a_token_with_a_known_key_and_a_wrong_secret_gets_401(server, alice, token):
    prefix, key, secret = token.split("_", 2)
    wrong = "x" if secret[0] != "x" else "y"
    forged = f"{prefix}_{key}_{wrong}{secret[1:]}"
    assert server.poll(token).status == 200  # the real one works (and its row is now cached)
    expect_error(server.poll(forged), 401, "not_authenticated")
    expect_error(server.poll(forged, after=0, timeout=1), 401, "not_authenticated")


def test_changing_the_password_answers_the_old_sessions_held_polls_with_401(server, alice, session_cookie):
    cookie = session_cookie(alice)
    held = []
    poller = threads.start(lambda: held.append(server.poll(cookies=cookie, after=0, timeout=20)))
    server.wait_for_held_polls(1, alice.pk)  # subscribed, checked, waiting
    started = time.monotonic()
    alice.set_password("another one")
    alice.save()
    poller.join(10)
    assert "held" in expect_error(held[0], 401, "not_authenticated")["detail"]  # ended while held
    assert time.monotonic() - started < 3  # at once, not at the poll's timeout


def test_a_deleted_token_gets_401_at_once(server, alice, token):
    from notify.models import ApiToken

    assert server.poll(token).status == 200  # now in the token cache
    ApiToken.objects.get(user=alice).delete()
    expect_error(server.poll(token), 401, "not_authenticated")


def test_deactivating_a_user_stops_their_tokens_and_answers_held_polls(server, alice, token):
    cursor = server.poll(token).json()["cursor"]
    held = []
    poller = threads.start(lambda: held.append(server.poll(token, after=cursor, timeout=20)))
    server.wait_for_held_polls(1, alice.pk)  # subscribed, checked, waiting
    started = time.monotonic()
    alice.is_active = False
    alice.save()
    poller.join(10)
    assert "held" in expect_error(held[0], 401, "not_authenticated")["detail"]  # ended while held
    assert time.monotonic() - started < 3  # at once, not at the poll's timeout
    expect_error(server.poll(token), 401, "not_authenticated")


def test_wrong_methods_get_405_with_allow(server, token):
    reply = server.request("POST", "/notify/poll", headers={"Authorization": f"Bearer {token}"})
    assert (reply.status, reply.headers["allow"], reply.json()["error"]) == (405, "GET", "method_not_allowed")
    reply = server.request("GET", "/notify/read", headers={"Authorization": f"Bearer {token}"})
    assert (reply.status, reply.headers["allow"]) == (405, "POST")


def test_more_held_polls_than_allowed_get_429_with_retry_after(server, alice, token):
    from notify.conf import conf

    cursor = server.poll(token).json()["cursor"]
    results: list = []
    held = [
        threads.start(lambda: results.append(server.poll(token, after=cursor, timeout=20)))
        for _ in range(conf.MAX_POLLS_PER_USER)
    ]
    server.wait_for_held_polls(conf.MAX_POLLS_PER_USER, alice.pk)
    reply = server.poll(token, after=cursor, timeout=1)
    expect_error(reply, 429, "too_many_polls")
    # The refusal ended none of the held polls: each is still there, and answered by the next send.
    server.wait_for_held_polls(conf.MAX_POLLS_PER_USER, alice.pk)
    notify.send(alice, "to all ten")
    for thread in held:
        thread.join(10)
    assert len(results) == conf.MAX_POLLS_PER_USER
    for page in results:
        expect_page(page, cursor, ["to all ten"])
    # Their slots are given back: one more may be held now.
    expect_page(server.poll(token, after=cursor, timeout=0), cursor, ["to all ten"])


def post_read(server, body, *, token=None, cookies=None, csrf=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookies:
        headers["Cookie"] = cookies
    if csrf:
        headers["X-CSRFToken"] = csrf
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.request("POST", "/notify/read", headers=headers, body=data)


def test_read_marks_given_ids_and_returns_the_unread_count(server, alice, token):
    a, b, c = (notify.send(alice, t)[0] for t in "abc")
    reply = post_read(server, {"ids": [a.pk, c.pk]}, token=token)
    assert reply.status == 200
    assert reply.json() == {"unread_count": 1}
    assert set(alice.notifications.unread().values_list("title", flat=True)) == {"b"}


def test_read_all(server, alice, token):
    notify.send(alice, "a"), notify.send(alice, "b")
    assert post_read(server, {"all": True}, token=token).json() == {"unread_count": 0}
    assert not alice.notifications.unread().exists()


def test_read_cannot_touch_another_users_notifications(server, make_user, token_for):
    alice, bob = make_user(), make_user()
    [theirs] = notify.send(alice, "alice's")
    assert post_read(server, {"ids": [theirs.pk]}, token=token_for(bob)).json() == {"unread_count": 0}
    assert alice.notifications.unread().count() == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"ids": "1"}',
        b'{"ids": [1, "2"]}',
        b'{"ids": [true]}',
        b'{"all": false}',
        b'{"ids": [1], "all": true}',
        b"{}",
        b'{"ids": [-3]}',
        b"\xff\xfe",
    ],
)
def test_malformed_read_bodies_get_400(server, token, body):
    reply = post_read(server, body, token=token)
    assert reply.status == 400
    assert reply.json()["error"] in ("invalid_json", "invalid_body")


def test_read_with_a_session_needs_the_csrf_token(server, alice, session_cookie):
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    notify.send(alice, "a")
    cookies = session_cookie(alice)
    refused = post_read(server, {"all": True}, cookies=cookies)
    assert refused.status == 403
    assert refused.json()["error"] == "csrf_failed"
    assert alice.notifications.unread().count() == 1

    secret = _get_new_csrf_string()
    accepted = post_read(
        server, {"all": True}, cookies=f"{cookies}; csrftoken={secret}", csrf=_mask_cipher_secret(secret)
    )
    assert accepted.status == 200
    assert alice.notifications.unread().count() == 0


def test_read_with_a_token_needs_no_csrf_token(server, alice, token):
    notify.send(alice, "a")
    assert post_read(server, {"all": True}, token=token).status == 200


def test_an_oversized_read_body_gets_413(server, token):
    body = b'{"ids": [' + b"1," * 1_400_000 + b"1]}"  # about 2.8 MB, above Django's 2.5 MB
    reply = post_read(server, body, token=token)
    assert reply.status == 413
    assert reply.json()["error"] == "too_large"


def test_revoking_a_token_answers_its_held_polls_with_401(server, alice, token):
    from notify.models import ApiToken

    cursor = server.poll(token).json()["cursor"]
    held = []
    poller = threads.start(lambda: held.append(server.poll(token, after=cursor, timeout=20)))
    server.wait_for_held_polls(1, alice.pk)  # subscribed, checked, waiting
    started = time.monotonic()
    ApiToken.objects.get(user=alice).revoke()
    poller.join(10)
    assert "revoked" in expect_error(held[0], 401, "not_authenticated")["detail"]
    assert time.monotonic() - started < 3  # at once, not at the poll's timeout


def test_logging_out_answers_the_sessions_held_polls_with_401(server, alice):
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(alice)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    held = []
    poller = threads.start(lambda: held.append(server.poll(cookies=cookie, after=0, timeout=20)))
    server.wait_for_held_polls(1, alice.pk)  # subscribed, checked, waiting
    started = time.monotonic()
    client.post("/logout/")
    poller.join(10)
    assert "held" in expect_error(held[0], 401, "not_authenticated")["detail"]  # ended while held
    assert time.monotonic() - started < 3  # at once, not at the poll's timeout


def test_revoking_a_token_answers_its_held_topic_and_multi_stream_polls_with_401(server, alice, token):
    from notify.models import ApiToken

    room = f"room:contract-{os.urandom(4).hex()}"  # the demo lets signed-in users read room:*
    held = []
    headers = {"Authorization": f"Bearer {token}"}
    pollers = [
        threads.start(
            lambda: held.append(
                server.request(
                    "GET", f"/notify/topics/{room}/poll", params={"after": "0", "timeout": 20}, headers=headers
                )
            )
        ),
        threads.start(
            lambda: held.append(server.poll(token, streams=f"inbox,{room}", after=f"inbox:0,{room}:0", timeout=20))
        ),
    ]
    # Both listen on alice's own channel, the topic-only poll too: that is where a revocation is heard.
    server.wait_for_held_polls(2, alice.pk)
    started = time.monotonic()
    ApiToken.objects.get(user=alice).revoke()
    for poller in pollers:
        poller.join(10)
    assert len(held) == 2
    for reply in held:
        assert "held" in expect_error(reply, 401, "not_authenticated")["detail"]  # ended while held
    assert time.monotonic() - started < 3  # at once, not at the polls' timeout


def test_a_topic_cursor_just_below_what_retention_keeps_is_410_and_the_oldest_cursor_is_complete(server, token):
    from django.conf import settings
    from django.test import override_settings

    room = f"room:contract-{os.urandom(4).hex()}"
    with override_settings(NOTIFY={**settings.NOTIFY, "TOPIC_RETENTION": {"room:*": {"keep_last": 3}}}):
        for i in range(1, 8):
            notify.publish(room, {"text": i})  # keeps 5, 6, 7: cursor 4 is the oldest complete one

    def topic_poll(after: str):
        path = f"/notify/topics/{room}/poll"
        return server.request(
            "GET", path, params={"after": after, "timeout": 0}, headers={"Authorization": f"Bearer {token}"}
        )

    expired = expect_error(topic_poll("3"), 410, "cursor_expired")  # message 4 is gone: never a silent gap
    assert expired["oldest_cursor"] == "4"
    page = topic_poll("4")
    assert page.status == 200
    assert [m["data"]["text"] for m in page.json()["messages"]] == [5, 6, 7]


def test_other_users_held_polls_are_untouched_by_a_revocation(server, make_user, token_for, alice, token):
    from notify.models import ApiToken

    bob = make_user()
    bob_token = token_for(bob)
    bobs, alices = [], []
    bob_poller = threads.start(lambda: bobs.append(server.poll(bob_token, after=0, timeout=20)))
    alice_poller = threads.start(lambda: alices.append(server.poll(token, after=0, timeout=20)))
    server.wait_for_held_polls(1, bob.pk)
    server.wait_for_held_polls(1, alice.pk)
    ApiToken.objects.get(user=alice).revoke()
    alice_poller.join(10)
    expect_error(alices[0], 401, "not_authenticated")  # the revocation was heard...
    server.wait_for_held_polls(1, bob.pk)  # ...and bob's poll is still held, still listening
    assert not bobs
    notify.send(bob, "still here")
    bob_poller.join(10)
    expect_page(bobs[0], "0", ["still here"])


def test_tokens_never_reach_the_server_log(server, token):
    invalid = "ntf_0123456789abcdef_NEVERLOGGEDsecretvalue"
    server.poll(token, after=0, timeout=0)
    server.poll(invalid)
    server.request("POST", "/notify/read", headers={"Authorization": f"Bearer {invalid}"}, body=b"{")
    log = server.log_path.read_text(errors="replace")
    assert token.split("_", 2)[2] not in log
    assert "NEVERLOGGED" not in log
