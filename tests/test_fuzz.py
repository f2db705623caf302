"""Bad input, generated: whatever a client sends, the answer is a clear 4xx JSON or a
correct 200 — never a 500, a traceback, or another user's notifications."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import notify
from tests.server import Server

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

values = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="0123456789.-+eE ", max_size=12),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["", "nan", "inf", "-0", "1e9", "0x10", "٣", "１", "9" * 400, "\x00", "%", "%ZZ", "25"]),
)
params = st.dictionaries(st.sampled_from(["after", "timeout", "limit", "x", "after[]", "Timeout"]), values, max_size=4)
headers_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    st.sampled_from(["Bearer", "Bearer  ", "bearer ntf_", "Bearer ntf_0123456789abcdef_x", "Token abc"]),
)


@pytest.fixture(scope="module")
def fuzz_server(django_db_setup, django_db_blocker) -> Iterator[Server]:
    # A short maximum timeout: a generated request that happens to be valid is
    # held for at most 0.3 s.
    with django_db_blocker.unblock():
        own = Server(env={"NOTIFY_MAX_TIMEOUT": "0.3", "NOTIFY_DEFAULT_TIMEOUT": "0.3"}).start()
    yield own
    own.stop()


@pytest.fixture
def two_users(make_user, token_for):
    alice, bob = make_user(), make_user()
    notify.send(alice, "alice's secret")
    for i in range(3):
        notify.send(bob, f"bob {i}")
    bobs_ids = set(bob.notifications.values_list("pk", flat=True))
    return token_for(bob), bobs_ids


def raw_request(server: Server, method: str, target: str, headers: dict[str, str], body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def assert_clean(status: int, headers: dict[str, str], body: bytes, bobs_ids: set[int]) -> None:
    assert status < 500, body[:300]
    assert headers.get("content-type", headers.get("Content-Type", "")).startswith("application/json")
    payload = json.loads(body)
    if status >= 400:
        assert isinstance(payload["error"], str) and isinstance(payload["detail"], str)
        assert "Traceback" not in payload["detail"]
    elif "notifications" in payload:
        assert {n["id"] for n in payload["notifications"]} <= bobs_ids


@FUZZ
@given(query=params)
def test_any_query_string_gets_a_clean_answer(fuzz_server, two_users, query):
    token, bobs_ids = two_users
    target = "/notify/poll?" + urlencode(query)
    assert_clean(*raw_request(fuzz_server, "GET", target, {"Authorization": f"Bearer {token}"}), bobs_ids)


@FUZZ
@given(raw=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80))
def test_any_raw_query_bytes_get_a_clean_answer(fuzz_server, two_users, raw):
    token, bobs_ids = two_users
    target = "/notify/poll?" + quote(raw, safe="=&%+;")
    assert_clean(*raw_request(fuzz_server, "GET", target, {"Authorization": f"Bearer {token}"}), bobs_ids)


@FUZZ
@given(authorization=headers_values)
def test_any_authorization_header_gets_401_or_the_callers_own(fuzz_server, two_users, authorization):
    _, bobs_ids = two_users
    status, headers, body = raw_request(fuzz_server, "GET", "/notify/poll", {"Authorization": authorization})
    assert_clean(status, headers, body, bobs_ids)
    assert status == 401


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda children: (
                st.lists(children, max_size=5)
                | st.dictionaries(st.sampled_from(["ids", "all", "x"]), children, max_size=3)
            ),
            max_leaves=10,
        ).map(lambda value: json.dumps(value).encode()),
    ),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
    ),
)
def test_any_read_body_gets_a_clean_answer_and_touches_only_the_callers_rows(
    fuzz_server, two_users, body, content_type
):
    token, bobs_ids = two_users
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    assert_clean(*raw_request(fuzz_server, "POST", "/notify/read", headers, body), bobs_ids)
    from notify.models import Notification

    assert Notification.objects.filter(title="alice's secret", read_at__isnull=True).exists()


@FUZZ
@given(
    method=st.sampled_from(["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"]),
    path=st.sampled_from(["/notify/poll", "/notify/read"]),
)
def test_other_methods_get_405(fuzz_server, two_users, method, path):
    # (A method name HTTP does not know never reaches the app: uvicorn's parser answers 400.)
    token, bobs_ids = two_users
    status, headers, body = raw_request(fuzz_server, method, path, {"Authorization": f"Bearer {token}"})
    assert status == 405
    if method != "HEAD":
        assert_clean(status, headers, body, bobs_ids)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sends=st.lists(st.tuples(st.integers(0, 3), st.text(min_size=1, max_size=20)), min_size=1, max_size=12),
    poller=st.integers(0, 3),
    by_session=st.booleans(),
    limit=st.integers(1, 5),
)
def test_a_poll_only_ever_returns_the_callers_own_notifications(
    fuzz_server, make_user, token_for, session_cookie, sends, poller, by_session, limit
):
    """User isolation as a property: random users, random sends, a poll by session or by token."""
    users = [make_user() for _ in range(4)]
    for index, title in sends:
        if "\x00" in title:  # refused by send() on every database (test_sending checks how)
            with pytest.raises(ValueError):
                notify.send(users[index], title)
            continue
        notify.send(users[index], title)
    me = users[poller]
    credentials = {"cookies": session_cookie(me)} if by_session else {"token": token_for(me)}
    mine = list(me.notifications.order_by("seq").values_list("pk", flat=True))

    first = fuzz_server.poll(**credentials, limit=limit).json()  # unread snapshot: the newest `limit`
    got = [n["id"] for n in first["notifications"]]
    assert got == mine[-limit:] if mine else got == []
    # And along the cursor chain from the start, page by page: exactly mine, in order.
    cursor, chain = "0", []
    for _ in range(len(mine) + 1):
        page = fuzz_server.poll(**credentials, after=cursor, limit=limit, timeout=0).json()
        chain += [n["id"] for n in page["notifications"]]
        if not page["notifications"]:
            break
        cursor = page["cursor"]
    assert chain == mine


# --- topics and multi-stream polls ------------------------------------------------------------------------------------

stream_names = st.sampled_from(
    ["inbox", "room:fuzz", "room:fuzz:2", "lobby", "", "bad name", "inbox:1", "a" * 101, "room:é", "room:fuzz,", ","]
)
cursors = st.one_of(st.sampled_from(["0", "1", "-1", "x", "", "9" * 30]), st.text(max_size=8))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    streams=st.lists(stream_names, max_size=12).map(",".join),
    after=st.lists(st.tuples(stream_names, cursors).map(":".join), max_size=4).map(",".join),
)
def test_any_multi_stream_query_gets_a_clean_answer(fuzz_server, two_users, streams, after):
    token, bobs_ids = two_users
    target = "/notify/poll?" + urlencode({"streams": streams, "after": after, "timeout": "0"})
    status, headers, body = raw_request(fuzz_server, "GET", target, {"Authorization": f"Bearer {token}"})
    assert_clean(status, headers, body, bobs_ids)
    inbox = json.loads(body).get("streams", {}).get("inbox", {})
    assert {n["id"] for n in inbox.get("notifications", [])} <= bobs_ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=10)
        | st.sampled_from(["\x00", "\ud800", "ü"]),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3),
        max_leaves=8,
    ),
    wrap=st.booleans(),
)
def test_any_topic_publish_body_gets_a_clean_answer(fuzz_server, two_users, data, wrap):
    token, bobs_ids = two_users
    body = json.dumps({"data": data} if wrap else data).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, reply_headers, reply = raw_request(fuzz_server, "POST", "/notify/topics/room:fuzz/publish", headers, body)
    assert_clean(status, reply_headers, reply, bobs_ids)
    if status == 201:
        # What was stored is what a poll gives back.
        message = json.loads(reply)["message"]
        page = fuzz_server.request(
            "GET",
            "/notify/topics/room:fuzz/poll",
            headers=headers,
            params={"after": str(int(json.loads(reply)["cursor"]) - 1), "timeout": "0"},
        ).json()
        assert page["messages"] == [message]
