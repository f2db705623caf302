"""Topic streams and multi-stream polls (README, "Topic streams"), over real HTTP against a real uvicorn.

The server runs project.settings: signed-in users may read and post topics named
``room:*`` (project/demo/topics.py), and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, override_settings
from django.utils import timezone

import notify
from notify.models import Topic, TopicMessage
from notify.topics import InvalidTopic, retention_for
from tests import threads
from tests.server import ROOT
from tests.server import test_database_url as database_url

_rooms = iter(range(10**6))


@pytest.fixture
def room() -> str:
    """A topic of this test's own (the server's database outlives each test)."""
    return f"room:{os.getpid()}-{next(_rooms)}-{os.urandom(3).hex()}"


def topic_poll(server, token, name, *, cookies=None, **params) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if cookies:
        headers["Cookie"] = cookies
    return server.request("GET", f"/notify/topics/{name}/poll", params=params, headers=headers, timeout=70)


def post(server, name, body, *, token=None, cookies=None, csrf=None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookies:
        headers["Cookie"] = cookies
    if csrf:
        headers["X-CSRFToken"] = csrf
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.request("POST", f"/notify/topics/{name}/publish", headers=headers, body=data)


def texts(page: dict) -> list:
    return [m["data"]["text"] for m in page["messages"]]


def follow(server, token, name, cursor, *, until: int, deadline: float = 30.0) -> list[dict]:
    """Poll along a topic's cursor chain, as a client does, until ``until`` messages arrived."""
    received: list[dict] = []
    stop = time.monotonic() + deadline
    while len(received) < until and time.monotonic() < stop:
        page = topic_poll(server, token, name, after=cursor, timeout=5, limit=7).json()
        received += page["messages"]
        cursor = page["cursor"]
    return received


# --- publish and poll -------------------------------------------------------------------------------------------


def test_a_held_topic_poll_is_woken_by_a_publish(server, alice, token, room):
    cursor = topic_poll(server, token, room).json()["cursor"]
    assert cursor == "0"
    threads.start(notify.publish, room, {"text": "hello"}, sender=alice, delay=0.5)

    started = time.monotonic()
    reply = topic_poll(server, token, room, after=cursor, timeout=20)
    elapsed = time.monotonic() - started

    assert reply.status == 200
    assert reply.headers["cache-control"] == "no-store"
    page = reply.json()
    assert page["cursor"] == "1"
    [message] = page["messages"]
    assert set(message) == {"id", "topic", "data", "sender", "created_at"}
    assert message["topic"] == room and message["data"] == {"text": "hello"}
    assert message["sender"] == {"id": alice.pk, "username": alice.username}
    assert 0.4 < elapsed < 5


def test_snapshot_is_the_newest_limit_oldest_first_and_the_cursor_chain_continues(server, token, room):
    for i in range(5):
        notify.publish(room, {"text": i})
    snapshot = topic_poll(server, token, room, limit=3).json()
    assert texts(snapshot) == [2, 3, 4] and snapshot["cursor"] == "5"
    assert snapshot["messages"][0]["sender"] is None

    notify.publish(room, {"text": 5})
    notify.publish(room, {"text": 6})
    first = topic_poll(server, token, room, after="2", limit=2).json()
    second = topic_poll(server, token, room, after=first["cursor"], limit=10).json()
    assert texts(first) == [2, 3] and first["cursor"] == "4"
    assert texts(second) == [4, 5, 6] and second["cursor"] == "7"


def test_a_timed_out_topic_poll_answers_empty_with_the_same_cursor(server, token, room):
    notify.publish(room, {"text": "x"})
    started = time.monotonic()
    reply = topic_poll(server, token, room, after="1", timeout=1)
    assert 0.9 < time.monotonic() - started < 5
    assert reply.json() == {"cursor": "1", "messages": []}


def test_a_topic_nothing_was_published_to_polls_empty_from_zero(server, token, room):
    assert topic_poll(server, token, room).json() == {"cursor": "0", "messages": []}
    assert topic_poll(server, token, room, after="0", timeout=0).json() == {"cursor": "0", "messages": []}


def _publish_many(room: str, prefix: str, count: int) -> None:
    for i in range(count):
        notify.publish(room, {"text": f"{prefix}{i}"})


PUBLISHER = """
import sys, django
django.setup()
import notify
room, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(count):
    notify.publish(room, {"text": f"{prefix}{i}"})
"""


def test_concurrent_publishers_reach_a_polling_client_exactly_once_in_order(server, token, room):
    """Threads here and another process publish at once; one client follows the cursor chain."""
    cursor = topic_poll(server, token, room).json()["cursor"]
    per_sender = 25
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DATABASE_URL": database_url()}
    other = subprocess.Popen([sys.executable, "-c", PUBLISHER, room, "p", str(per_sender)], cwd=ROOT, env=env)
    senders = [threads.start(_publish_many, room, f"t{n}-", per_sender) for n in range(3)]

    received = follow(server, token, room, cursor, until=4 * per_sender)
    for sender in senders:
        sender.join(30)

    assert other.wait(30) == 0
    assert len(received) == 4 * per_sender
    assert len({m["id"] for m in received}) == 4 * per_sender  # no duplicates
    ids = [m["id"] for m in received]
    seqs = list(TopicMessage.objects.filter(topic_id=room).order_by("seq").values_list("id", flat=True))
    assert ids == seqs  # stream order
    for prefix in ("p", "t0-", "t1-", "t2-"):  # each sender's own order kept
        mine = [m["data"]["text"] for m in received if m["data"]["text"].startswith(prefix)]
        assert mine == [f"{prefix}{i}" for i in range(per_sender)]
    assert Topic.objects.get(name=room).last_seq == 4 * per_sender


def test_a_rolled_back_publish_is_neither_stored_nor_delivered(server, token, room):
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        notify.publish(room, {"text": "never"})
        raise RuntimeError
    notify.publish(room, {"text": "kept"})
    assert texts(topic_poll(server, token, room, after="0", timeout=1).json()) == ["kept"]


def test_publish_refuses_bad_names_and_data_before_writing(room):
    with pytest.raises(InvalidTopic):
        notify.publish("inbox", {"a": 1})
    with pytest.raises(InvalidTopic):
        notify.publish("has space", {"a": 1})
    with pytest.raises(TypeError):
        notify.publish(room, ["not", "a", "dict"])
    with pytest.raises(ValueError):
        notify.publish(room, {"a": "nul\x00"})
    with pytest.raises(TypeError):
        notify.publish(room, {"a": float("nan")})


# --- posting over HTTP ------------------------------------------------------------------------------------------


def test_post_with_a_token_publishes_and_wakes_a_held_poll(server, alice, token, room):
    held = []
    poller = threads.start(lambda: held.append(topic_poll(server, token, room, after="0", timeout=20)))
    time.sleep(0.5)
    reply = post(server, room, {"data": {"text": "hi"}}, token=token)
    poller.join(10)

    assert reply.status == 201
    body = reply.json()
    assert body["cursor"] == "1"
    assert body["message"]["data"] == {"text": "hi"}
    assert body["message"]["sender"] == {"id": alice.pk, "username": alice.username}
    assert held[0].json()["messages"] == [body["message"]]


def test_post_with_a_session_needs_the_csrf_token(server, alice, session_cookie, room):
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    cookies = session_cookie(alice)
    refused = post(server, room, {"data": {"text": "x"}}, cookies=cookies)
    assert refused.status == 403 and refused.json()["error"] == "csrf_failed"
    assert not TopicMessage.objects.filter(topic_id=room).exists()

    secret = _get_new_csrf_string()
    accepted = post(
        server,
        room,
        {"data": {"text": "x"}},
        cookies=f"{cookies}; csrftoken={secret}",
        csrf=_mask_cipher_secret(secret),
    )
    assert accepted.status == 201
    # And the session reads the topic too.
    assert texts(topic_poll(server, None, room, cookies=cookies).json()) == ["x"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_json"),
        (b"[1]", "invalid_body"),
        (b"{}", "invalid_body"),
        (b'{"data": [1]}', "invalid_body"),
        (b'{"data": {"a": 1}, "extra": 1}', "invalid_body"),
        (b'{"data": {"a": "\\u0000"}}', "invalid_body"),
        (b'{"data": {"a": NaN}}', "invalid_body"),
        (b'{"data": {"a": "\\ud800"}}', "invalid_body"),
        (b"[" * 100_000, "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
    ],
)
def test_malformed_post_bodies_get_400(server, token, room, body, code):
    reply = post(server, room, body, token=token)
    assert reply.status == 400, reply.body
    assert reply.json()["error"] == code
    assert '{"data"' in reply.json()["detail"]


def test_an_oversized_post_gets_413(server, token, room):
    body = b'{"data": {"text": "' + b"x" * 3_000_000 + b'"}}'
    reply = post(server, room, body, token=token)
    assert reply.status == 413 and reply.json()["error"] == "too_large"


# --- permissions ----------------------------------------------------------------------------------------------------


def test_the_hook_decides_who_reads_and_posts(server, token):
    # project/demo/topics.py: only "room:*" topics are open.
    for reply in (
        topic_poll(server, token, "lobby"),
        topic_poll(server, token, "lobby", after="0", timeout=1),
        post(server, "lobby", {"data": {}}, token=token),
    ):
        assert reply.status == 403
        assert reply.json()["error"] == "forbidden"
        assert "lobby" in reply.json()["detail"]


def denies_posting(user: Any, topic: str, action: str) -> bool:
    return action == "read"


@pytest.mark.django_db(transaction=True)
async def test_no_hook_denies_everything_and_a_read_only_hook_denies_posts(make_user, room, close_hubs):
    alice = await sync_to_async(make_user)()
    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    # AsyncClient skips the CSRF check unless asked: the hook is what answers here.
    with override_settings(NOTIFY={"TOPIC_PERMISSION": None}):
        assert (await client.get(f"/notify/topics/{room}/poll")).status_code == 403
        assert (
            await client.post(f"/notify/topics/{room}/publish", {"data": {}}, content_type="application/json")
        ).status_code == 403
    with override_settings(NOTIFY={"TOPIC_PERMISSION": "tests.test_topics.denies_posting"}):
        assert (await client.get(f"/notify/topics/{room}/poll")).status_code == 200
        refused = await client.post(f"/notify/topics/{room}/publish", {"data": {}}, content_type="application/json")
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert not await TopicMessage.objects.filter(topic_id=room).aexists()


def test_anonymous_topic_requests_get_401(server, room):
    assert topic_poll(server, None, room).status == 401
    assert post(server, room, {"data": {}}).status == 401


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "code"),
    [
        ("inbox", {}, "invalid_topic"),
        ("a" * 101, {}, "invalid_topic"),
        ("room%20x", {}, "invalid_topic"),
        ("room:%C3%A9", {}, "invalid_topic"),
        ("room/x", {}, "invalid_topic"),
        ("room%2Fx", {}, "invalid_topic"),
        ("room:1", {"after": "x"}, "invalid_cursor"),
        ("room:1", {"timeout": "-1"}, "invalid_timeout"),
        ("room:1", {"limit": "0"}, "invalid_limit"),
        ("room:1", {"limit": "101"}, "invalid_limit"),
    ],
)
def test_bad_topic_poll_input_gets_400_saying_what_is_accepted(server, token, name, params, code):
    reply = topic_poll(server, token, name, **params)
    assert reply.status == 400
    assert reply.json()["error"] == code
    assert "must" in reply.json()["detail"]


def test_a_cursor_ahead_of_the_topic_is_400(server, token, room):
    notify.publish(room, {"text": "one"})
    reply = topic_poll(server, token, room, after="5", timeout=1)
    assert reply.status == 400 and reply.json()["error"] == "invalid_cursor"


def test_wrong_methods_on_topic_urls_get_405(server, token, room):
    reply = server.request("POST", f"/notify/topics/{room}/poll", headers={"Authorization": f"Bearer {token}"})
    assert (reply.status, reply.headers["allow"]) == (405, "GET")
    reply = server.request("GET", f"/notify/topics/{room}/publish", headers={"Authorization": f"Bearer {token}"})
    assert (reply.status, reply.headers["allow"]) == (405, "POST")


# --- retention --------------------------------------------------------------------------------------------------


def test_the_most_specific_retention_pattern_wins():
    rules = {
        "*": {"keep_last": 10, "keep_seconds": None},
        "room:*": {"keep_last": 5, "keep_seconds": 60},
        "room:vip:*": {"keep_last": None, "keep_seconds": None},
    }
    with override_settings(NOTIFY={"TOPIC_RETENTION": rules}):
        assert retention_for("lobby") == (10, None)
        assert retention_for("room:1") == (5, 60)
        assert retention_for("room:vip:1") == (None, None)
    with override_settings(NOTIFY={"TOPIC_RETENTION": {"room:*": {"keep_last": 3}}}):
        assert retention_for("lobby") == (None, None)


def test_retention_by_count_answers_an_old_cursor_with_410_and_the_oldest_cursor(server, token, room):
    with override_settings(NOTIFY={**_notify(), "TOPIC_RETENTION": {"room:*": {"keep_last": 3, "keep_seconds": None}}}):
        for i in range(1, 8):
            notify.publish(room, {"text": i})
    assert list(TopicMessage.objects.filter(topic_id=room).values_list("seq", flat=True)) == [5, 6, 7]
    assert Topic.objects.get(name=room).pruned_seq == 4

    expired = topic_poll(server, token, room, after="2", timeout=1)
    assert expired.status == 410
    body = expired.json()
    assert body["error"] == "cursor_expired" and body["oldest_cursor"] == "4" and body["detail"]
    # Restarting from the oldest cursor gets everything still kept, nothing twice.
    assert texts(topic_poll(server, token, room, after=body["oldest_cursor"], timeout=1).json()) == [5, 6, 7]
    assert topic_poll(server, token, room).json()["cursor"] == "7"


def test_retention_by_age_deletes_what_is_older_and_410s_its_cursors(server, token, room):
    for i in range(1, 4):
        notify.publish(room, {"text": i})
    TopicMessage.objects.filter(topic_id=room, seq__lte=2).update(created_at=timezone.now() - timedelta(hours=2))
    with override_settings(NOTIFY={**_notify(), "TOPIC_RETENTION": {"*": {"keep_last": None, "keep_seconds": 3600}}}):
        notify.publish(room, {"text": 4})
    assert list(TopicMessage.objects.filter(topic_id=room).values_list("seq", flat=True)) == [3, 4]
    reply = topic_poll(server, token, room, after="1", timeout=1)
    assert reply.status == 410 and reply.json()["oldest_cursor"] == "2"
    assert texts(topic_poll(server, token, room, after="2", timeout=1).json()) == [3, 4]


def _notify() -> dict:
    from django.conf import settings

    return dict(settings.NOTIFY)


# --- multi-stream polls -----------------------------------------------------------------------------------------


def streams_poll(server, token, **params) -> Any:
    return server.poll(token, **params)


def test_one_held_poll_follows_the_inbox_and_two_topics_woken_by_any(server, alice, token, room):
    other = room + ":b"
    names = f"inbox,{room},{other}"
    first = streams_poll(server, token, streams=names).json()
    assert first == {
        "cursor": f"inbox:0,{room}:0,{other}:0",
        "streams": {
            "inbox": {"cursor": "0", "notifications": [], "unread_count": 0},
            room: {"cursor": "0", "messages": []},
            other: {"cursor": "0", "messages": []},
        },
    }
    cursor = first["cursor"]
    for wake in (
        lambda: notify.publish(other, {"text": "b"}),
        lambda: notify.send(alice, "note"),
        lambda: notify.publish(room, {"text": "a"}),
    ):
        threads.start(wake, delay=0.4)
        started = time.monotonic()
        page = streams_poll(server, token, streams=names, after=cursor, timeout=20).json()
        assert 0.3 < time.monotonic() - started < 5
        assert set(page["streams"]) == {"inbox", room, other}
        cursor = page["cursor"]

    # The compound cursor carried every stream along: nothing again, nothing lost.
    assert cursor == f"inbox:1,{room}:1,{other}:1"
    assert streams_poll(server, token, streams=names, after=cursor, timeout=0).json()["streams"] == {
        "inbox": {"cursor": "1", "notifications": [], "unread_count": 1},
        room: {"cursor": "1", "messages": []},
        other: {"cursor": "1", "messages": []},
    }


def test_a_stream_with_data_answers_at_once_and_a_stream_without_a_cursor_gets_its_snapshot(server, alice, token, room):
    notify.publish(room, {"text": "old"})
    notify.send(alice, "unread")
    page = streams_poll(server, token, streams=f"{room},inbox", after=f"{room}:0", timeout=20).json()
    assert page["cursor"] == f"{room}:1,inbox:1"  # in the order asked
    assert texts(page["streams"][room]) == ["old"]
    assert [n["title"] for n in page["streams"]["inbox"]["notifications"]] == ["unread"]


def test_the_compound_cursor_round_trips_with_colons_in_topic_names(server, token, room):
    name = f"{room}:x:y"
    notify.publish(name, {"text": 1})
    page = streams_poll(server, token, streams=name, after=f"{name}:0", timeout=5).json()
    assert page["cursor"] == f"{name}:1" and texts(page["streams"][name]) == [1]
    notify.publish(name, {"text": 2})
    again = streams_poll(server, token, streams=name, after=page["cursor"], timeout=5).json()
    assert texts(again["streams"][name]) == [2]


def test_a_stream_that_refuses_fails_the_whole_poll_saying_which(server, token, room):
    forbidden = streams_poll(server, token, streams=f"inbox,{room},lobby", after=f"inbox:0,{room}:0,lobby:0", timeout=1)
    assert forbidden.status == 403
    assert forbidden.json()["stream"] == "lobby" and forbidden.json()["error"] == "forbidden"

    with override_settings(NOTIFY={**_notify(), "TOPIC_RETENTION": {"*": {"keep_last": 1, "keep_seconds": None}}}):
        notify.publish(room, {"text": 1}), notify.publish(room, {"text": 2})
    expired = streams_poll(server, token, streams=f"inbox,{room}", after=f"inbox:0,{room}:0", timeout=1)
    assert expired.status == 410
    assert expired.json()["stream"] == room and expired.json()["oldest_cursor"] == "1"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"streams": ""}, "invalid_streams"),
        ({"streams": ",".join(f"room:{i}" for i in range(11))}, "invalid_streams"),
        ({"streams": "inbox,inbox"}, "invalid_streams"),
        ({"streams": "inbox,bad name"}, "invalid_streams"),
        ({"streams": "inbox", "after": "5"}, "invalid_cursor"),
        ({"streams": "inbox", "after": "room:1:5"}, "invalid_cursor"),
        ({"streams": "inbox", "after": "inbox:x"}, "invalid_cursor"),
        ({"streams": "inbox", "after": "inbox:1,inbox:2"}, "invalid_cursor"),
        ({"streams": "inbox", "after": "inbox:0", "timeout": "x"}, "invalid_timeout"),
        ({"streams": "inbox", "limit": "0"}, "invalid_limit"),
    ],
)
def test_bad_multi_stream_input_gets_400_saying_what_is_accepted(server, token, params, code):
    reply = streams_poll(server, token, **params)
    assert reply.status == 400, reply.body
    assert reply.json()["error"] == code
    assert "must" in reply.json()["detail"]


def test_ten_streams_are_accepted(server, token, room):
    names = ",".join(["inbox"] + [f"{room}:{i}" for i in range(9)])
    page = streams_poll(server, token, streams=names).json()
    assert len(page["streams"]) == 10


def test_held_multi_stream_polls_count_against_the_users_poll_limit(server, token, room):
    after = f"inbox:0,{room}:0"
    results: list[int] = []
    held = [
        threads.start(
            lambda: results.append(streams_poll(server, token, streams=f"inbox,{room}", after=after, timeout=3).status)
        )
        for _ in range(5)
    ]
    held += [
        threads.start(lambda: results.append(topic_poll(server, token, room, after="0", timeout=3).status))
        for _ in range(5)
    ]
    time.sleep(1.5)
    refused = topic_poll(server, token, room, after="0", timeout=1)
    for thread in held:
        thread.join(10)
    assert refused.status == 429 and refused.json()["error"] == "too_many_polls"
    assert results == [200] * 10


def test_revoking_a_token_answers_its_held_topic_poll_with_401(server, alice, token, room):
    from notify.models import ApiToken

    held = []
    poller = threads.start(lambda: held.append(topic_poll(server, token, room, after="0", timeout=20)))
    time.sleep(0.5)
    ApiToken.objects.get(user=alice).revoke()
    poller.join(10)
    assert held[0].status == 401


def test_the_users_notifications_do_not_answer_a_topic_only_poll(server, alice, token, room):
    held = []
    poller = threads.start(lambda: held.append(topic_poll(server, token, room, after="0", timeout=1.5)))
    time.sleep(0.5)
    notify.send(alice, "not for this poll")
    poller.join(10)
    assert held[0].json() == {"cursor": "0", "messages": []}


@pytest.mark.django_db(transaction=True)
async def test_a_woken_topic_poll_answers_from_the_message_without_querying_again(
    make_user, room, monkeypatch, close_hubs
):
    from notify.streams import topic

    alice = await sync_to_async(make_user)()
    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    checks = []
    real = topic.topic_page_after

    def counting(*args):
        checks.append(args)
        return real(*args)

    monkeypatch.setattr(topic, "topic_page_after", counting)
    poll = asyncio.create_task(client.get(f"/notify/topics/{room}/poll", {"after": "0", "timeout": "20"}))
    await asyncio.sleep(0.5)
    await notify.apublish(room, {"text": "ü"}, sender=alice)
    response = await poll

    assert response.status_code == 200
    assert response.json()["messages"][0]["data"] == {"text": "ü"}
    assert response.json()["cursor"] == "1"
    assert len(checks) == 1  # the check before waiting; none after the wake-up


def test_held_topic_and_multi_stream_polls_cost_no_thread_each(server, make_user, token_for, room):
    """Served by notify.asgi.LongPollRouter like inbox polls: a held poll is a coroutine, not a thread."""
    from notify.conf import conf
    from tests.test_hub import server_threads

    tokens = [token_for(make_user()) for _ in range(20)]
    topic_poll(server, tokens[0], room)  # the database threads are started by now
    before = server_threads(server)
    pollers = [threads.start(topic_poll, server, token, room, after="0", timeout=2.5) for token in tokens[:10]]
    pollers += [
        threads.start(server.poll, token, streams=f"inbox,{room}", after=f"inbox:0,{room}:0", timeout=2.5)
        for token in tokens[10:]
    ]
    time.sleep(1.5)
    during = server_threads(server)
    for poller in pollers:
        poller.join(10)
    assert during - before <= conf.DB_THREADS


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["topic", "streams"])
async def test_a_held_topic_poll_that_lost_its_right_to_read_is_refused_not_answered(
    kind, make_user, monkeypatch, close_hubs
):
    """The permission is asked again before a woken poll answers with new messages: the
    right to read may have ended while the poll was held (here: alice is no longer staff,
    and staff rooms are for staff; project.demo.topics.can_use)."""
    from notify import polling

    alice = await sync_to_async(make_user)(is_staff=True)
    room = f"room:staff-{alice.pk}"
    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    waiting = asyncio.Event()

    async def hook(point, subscriptions):  # type: ignore[no-untyped-def]
        if point == "checked":
            waiting.set()

    monkeypatch.setattr(polling, "_test_hook", hook)
    if kind == "topic":
        url, query = f"/notify/topics/{room}/poll", {"after": "0", "timeout": "20"}
    else:
        url, query = "/notify/poll", {"streams": f"inbox,{room}", "after": f"inbox:0,{room}:0", "timeout": "20"}
    poll = asyncio.ensure_future(client.get(url, query))
    async with asyncio.timeout(5):
        await waiting.wait()  # held, permitted, waiting
    alice.is_staff = False
    await alice.asave(update_fields=["is_staff"])
    await notify.apublish(room, {"text": "for staff only"}, sender=None)
    async with asyncio.timeout(5):
        response = await poll

    assert response.status_code == 403, response.content
    assert response.json()["error"] == "forbidden"
    assert b"for staff only" not in response.content
