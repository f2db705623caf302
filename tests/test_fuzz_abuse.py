"""Abuse, generated (issue 13, cases 4 and 5): deep and wide JSON bodies and floods of query
parameters on every notify endpoint. Whatever the shape, the answer is a 4xx JSON that names
the limit, or the normal answer — never a 500 or a traceback, and a refused publish stores
nothing. Bounded: each test runs a few dozen examples against one server of its own, in seconds.
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
    if cut is None and depth <= conf.MAX_JSON_DEPTH:
        assert status == 201, payload
        assert stored == 1
        assert json.dumps(payload["message"]["data"], separators=(",", ":")).encode() == value
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
