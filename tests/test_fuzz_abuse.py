"""Abuse, generated (issue 13, cases 1, 4 and 5): deep and wide JSON bodies, floods of query
parameters and oversized payloads on every notify endpoint. Whatever the shape, the answer is a
4xx JSON that names the limit, or the normal answer — never a 500 or a traceback, and a refused
publish stores nothing. Bounded: each test runs a few dozen examples against one server of its
own, in seconds.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from itertools import count

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notify.conf import conf
from notify.models import TopicMessage
from tests.server import Server

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

pytestmark = pytest.mark.django_db(transaction=True)

_rooms = count()


@pytest.fixture(scope="module")
def fuzz_server(django_db_setup, django_db_blocker) -> Iterator[Server]:
    # Short polls: a generated request that happens to be a valid held poll answers in 0.3 s.
    with django_db_blocker.unblock():
        own = Server(env={"NOTIFY_MAX_TIMEOUT": "0.3", "NOTIFY_DEFAULT_TIMEOUT": "0.3"}).start()
    yield own
    own.stop()  # and fails if the server logged a traceback


def request(server: Server, method: str, target: str, token: str | None, body: bytes = b"") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, target, body=body, headers=headers)
        reply = conn.getresponse()
        raw = reply.read()
        assert reply.status < 500, (reply.status, raw[:300])
        assert reply.getheader("Content-Type", "").startswith("application/json"), raw[:300]
        payload = json.loads(raw)
        if reply.status >= 400:
            assert isinstance(payload["error"], str) and isinstance(payload["detail"], str), payload
        return reply.status, payload
    finally:
        conn.close()


def fresh_room() -> str:
    return f"room:fuzz-abuse-{os.getpid()}-{next(_rooms)}"


# --- deep and wide JSON --------------------------------------------------------------------------------------------

# A value nested inside the openers: a leaf, repeated `width` times in an array of its own.
openers = st.lists(st.sampled_from(["[", '{"k":', '{"a":1,"b":']), max_size=60) | st.sampled_from(
    [["["] * 5000, ['{"k":'] * 2000]
)
leaves = st.sampled_from(["1", "null", '"x"', '"[[[{{{"', '"\\"]]]"', "{}", "[]", '{"ids":[1]}'])
LEAF_DEPTH = {"{}": 1, "[]": 1, '{"ids":[1]}': 2}


def nested(opened: list[str], leaf: str, width: int) -> tuple[bytes, int]:
    """The JSON text and its true depth (strings hold brackets that must not count)."""
    closers = "".join("]" if opener == "[" else "}" for opener in reversed(opened))
    text = "".join(opened) + "[" + ",".join([leaf] * width) + "]" + closers
    return text.encode(), len(opened) + 1 + LEAF_DEPTH.get(leaf, 0)


@FUZZ
@given(opened=openers, leaf=leaves, width=st.integers(1, 3000), cut=st.one_of(st.none(), st.integers(1, 200)))
def test_deep_or_wide_json_read_bodies_get_a_clear_answer(fuzz_server, token, opened, leaf, width, cut):
    body, depth = nested(opened, leaf, width)
    if cut is not None:
        body = body[:-cut]  # unbalanced: still never a 500
    status, payload = request(fuzz_server, "POST", "/notify/read", token, body)
    assert status == 400
    if cut is not None:  # its brackets don't balance: not JSON, however deep
        assert payload["error"] == "invalid_json", payload
    elif depth > conf.MAX_JSON_DEPTH:
        assert payload["error"] == "too_deep" and str(conf.MAX_JSON_DEPTH) in payload["detail"], payload
    else:
        assert payload["error"] in ("invalid_json", "invalid_body"), payload


@FUZZ
@given(opened=openers, leaf=leaves, width=st.integers(1, 3000), cut=st.one_of(st.none(), st.integers(1, 200)))
def test_deep_or_wide_publishes_are_stored_whole_or_refused_before_anything_is_stored(
    fuzz_server, token, opened, leaf, width, cut
):
    room = fresh_room()
    value, depth = nested(['{"k":', *opened], leaf, width)  # data must be an object
    body = b'{"data":' + value + b"}"
    if cut is not None:
        body = body[:-cut]
    status, payload = request(fuzz_server, "POST", f"/notify/topics/{room}/publish", token, body)
    stored = TopicMessage.objects.filter(topic_id=room).count()
    if cut is None and depth <= conf.MAX_JSON_DEPTH and len(value) <= conf.MAX_TOPIC_MESSAGE_BYTES:
        assert status == 201, payload
        assert stored == 1
        assert json.dumps(payload["message"]["data"], separators=(",", ":")).encode() == value
    elif cut is None and depth <= conf.MAX_JSON_DEPTH:  # wide: past the size limit (value is compact JSON)
        assert (status, payload["error"], stored) == (413, "too_large", 0), payload
    else:
        assert status == 400 and stored == 0, payload
        assert payload["error"] == ("invalid_json" if cut is not None else "too_deep"), payload


# --- floods of query parameters ------------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/notify/poll"),
    ("GET", "/notify/poll?streams=inbox,room:fuzz&after=inbox:0,room:fuzz:0"),
    ("GET", "/notify/poll?after=0"),
    ("GET", "/notify/topics/room:fuzz/poll"),
    ("POST", "/notify/read"),
    ("POST", "/notify/topics/{room}/publish"),
]
# Short names and values: past about 16 KB of request line uvicorn (h11) refuses the request itself,
# with a 400 of its own, before the app sees it.
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_[]%20", min_size=1, max_size=4)


@FUZZ
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    fields=st.integers(990, 1200) | st.just(1001),
    name=names,
    value=st.text(alphabet="0123456789abc;", max_size=3),
    authenticated=st.booleans(),
)
def test_floods_of_query_parameters_get_400_json_on_every_endpoint(
    fuzz_server, token, endpoint, fields, name, value, authenticated
):
    method, path = endpoint
    room = fresh_room()
    path = path.format(room=room)
    base_fields = path.count("=")
    flood = "&".join([f"{name}={value}"] * (fields - base_fields))  # repeated names count as fields too
    target = f"{path}{'&' if '?' in path else '?'}{flood}"
    body = b'{"data": {"x": 1}}' if path.endswith("publish") else b'{"all": true}'
    status, payload = request(fuzz_server, method, target, token if authenticated else None, body)
    if fields > django_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:
        assert (status, payload["error"]) == (400, "too_many_fields"), payload
        assert str(django_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS) in payload["detail"]
        assert not TopicMessage.objects.filter(topic_id=room).exists()
    else:
        assert payload.get("error") != "too_many_fields", payload


# --- oversized payloads --------------------------------------------------------------------------------------------

UPLOAD_LIMIT = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # Django's, on every body
TEXT_OVERHEAD = len('{"text":""}')


def around(limit: int) -> st.SearchStrategy[int]:
    return st.integers(max(TEXT_OVERHEAD, limit - 64), limit + 64)


@settings(FUZZ, max_examples=25)  # one room: under any per-topic rate limit of the server's
@given(
    size=around(conf.MAX_TOPIC_MESSAGE_BYTES) | st.integers(TEXT_OVERHEAD, 3_000_000),
    padding=st.just(0) | around(UPLOAD_LIMIT) | st.integers(0, 3_000_000),
)
def test_oversized_publishes_get_413_saying_the_limit_and_store_nothing(fuzz_server, token, size, padding):
    room = f"room:fuzz-sizes-{os.getpid()}"
    data = json.dumps({"text": "x" * (size - TEXT_OVERHEAD)}, separators=(",", ":")).encode()
    body = b'{"data":' + b" " * padding + data + b"}"  # spaces: a body larger than its data
    before = TopicMessage.objects.filter(topic_id=room).count()
    status, payload = request(fuzz_server, "POST", f"/notify/topics/{room}/publish", token, body)
    stored = TopicMessage.objects.filter(topic_id=room).count() - before
    if len(body) > UPLOAD_LIMIT:
        assert (status, payload.get("error"), stored) == (413, "too_large", 0), payload
        assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in payload["detail"], payload
    elif size > conf.MAX_TOPIC_MESSAGE_BYTES:
        assert (status, payload.get("error"), stored) == (413, "too_large", 0), payload
        assert f"at most {conf.MAX_TOPIC_MESSAGE_BYTES}" in payload["detail"], payload
    else:
        assert (status, stored) == (201, 1), payload


@FUZZ
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    padding=st.just(0) | around(UPLOAD_LIMIT) | st.integers(0, 3_000_000),
    long_value=st.integers(0, 8000),  # a request line past ~16 KB is refused by uvicorn (h11) itself
    authenticated=st.booleans(),
)
def test_oversized_bodies_and_long_query_values_on_every_endpoint_get_a_clear_answer(
    fuzz_server, token, endpoint, padding, long_value, authenticated
):
    method, path = endpoint
    path = path.format(room=fresh_room())
    target = f"{path}{'&' if '?' in path else '?'}junk={'x' * long_value}"
    body = b'{"all":' + b" " * padding + b"true}" if method == "POST" else b" " * padding
    status, payload = request(fuzz_server, method, target, token if authenticated else None, body)
    if method == "POST" and len(body) > UPLOAD_LIMIT and authenticated:
        assert (status, payload.get("error")) == (413, "too_large"), payload
        assert str(UPLOAD_LIMIT) in payload["detail"], payload
    elif not authenticated:
        assert status == 401, payload
