"""Issue 13, case 1: sizes bounded where data enters, and the bytes of one poll answer.

As the attacker did it: fifty publishes of a 2.5 MB message to a room all got 201, and a
poll of the room then answered 127 MB. Now a topic message's data is at most
MAX_TOPIC_MESSAGE_BYTES (413 "too_large" saying the limit, nothing stored), a
notification at most MAX_NOTIFICATION_BYTES (``notify.send()`` raises before writing),
and a page stops at MAX_ANSWER_BYTES as it stops at ``limit``: its cursor is the last
item answered, and the client's next poll goes on from there at once.

Over real HTTP against real uvicorn servers (the session's, with the default limits, and
one of this module's with small ones: tests/settings_sizes.py), with the real Redis; the
wake-up path (a held poll answered from pub/sub messages) in process, at an exact point.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.test import AsyncClient, override_settings

import notify
from notify import pages, polling
from notify.checks import check_settings
from notify.conf import conf
from notify.models import Inbox, Notification, Topic, TopicMessage
from notify.sizes import TooLarge
from notify.streams import inbox as inbox_stream
from notify.streams import topic as topic_stream
from tests.server import Response, Server, expect_error

pytestmark = pytest.mark.django_db(transaction=True)

# tests/settings_sizes.py
SMALL_MESSAGE = 2000
SMALL_BUDGET = 8192
# Data of {"text": "x" * n} is n + 11 bytes as compact JSON.
TEXT_OVERHEAD = len('{"text":""}')


@pytest.fixture(scope="module")
def small_server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Server]:
    with django_db_blocker.unblock():
        own = Server(env={"DJANGO_SETTINGS_MODULE": "tests.settings_sizes"}).start()
    yield own
    own.stop()  # and fails if the server logged a traceback


def room() -> str:
    return f"room:sizes-{os.getpid()}-{os.urandom(3).hex()}"


def text_of(size: int) -> dict[str, str]:
    """Data of exactly ``size`` bytes as compact JSON."""
    return {"text": "x" * (size - TEXT_OVERHEAD)}


def publish(server: Server, token: str, name: str, body: bytes) -> Response:
    return server.request(
        "POST",
        f"/notify/topics/{name}/publish",
        body=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def topic_poll(server: Server, token: str, name: str, **params: Any) -> Response:
    return server.request(
        "GET", f"/notify/topics/{name}/poll", params=params, headers={"Authorization": f"Bearer {token}"}
    )


def nothing_stored(name: str) -> bool:
    return not TopicMessage.objects.filter(topic_id=name).exists() and not Topic.objects.filter(name=name).exists()


# --- what enters ---------------------------------------------------------------------------------------------------


def test_a_2_4_mb_publish_the_attacker_sent_gets_413_saying_the_limit_and_stores_nothing(server, token):
    # Just under Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), as in the issue: it got 201.
    name = room()
    reply = publish(server, token, name, json.dumps({"data": text_of(2_400_000)}).encode())
    body = expect_error(reply, 413, "too_large")
    assert "8192" in body["detail"] and "MAX_TOPIC_MESSAGE_BYTES" in body["detail"], body
    assert nothing_stored(name)


def test_a_publish_one_byte_past_the_limit_gets_413_and_one_at_it_is_stored_whole(server, token):
    name = room()
    refused = publish(server, token, name, json.dumps({"data": text_of(conf.MAX_TOPIC_MESSAGE_BYTES + 1)}).encode())
    body = expect_error(refused, 413, "too_large")
    assert f"data is {conf.MAX_TOPIC_MESSAGE_BYTES + 1} bytes" in body["detail"], body
    assert nothing_stored(name)

    at_limit = text_of(conf.MAX_TOPIC_MESSAGE_BYTES)
    stored = publish(server, token, name, json.dumps({"data": at_limit}, indent=4).encode())  # spaces don't count
    assert stored.status == 201, stored.body[:300]
    assert TopicMessage.objects.get(topic_id=name).data == at_limit


def test_a_body_past_django_s_upload_limit_gets_413_saying_both_limits(server, token):
    name = room()
    reply = publish(server, token, name, b'{"data": {"text": "' + b"x" * 3_000_000 + b'"}}')
    body = expect_error(reply, 413, "too_large")
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in body["detail"] and "8192" in body["detail"], body
    assert nothing_stored(name)


def test_publishing_too_much_data_from_python_raises_too_large_before_anything_is_stored(alice):
    name = room()
    with pytest.raises(TooLarge, match=r"at most 8192 \(NOTIFY\['MAX_TOPIC_MESSAGE_BYTES'\]\)"):
        notify.publish(name, text_of(8193), sender=alice)
    assert nothing_stored(name)
    notify.publish(name, text_of(8192), sender=alice)
    assert TopicMessage.objects.filter(topic_id=name).count() == 1


def test_sending_too_large_a_notification_raises_too_large_before_anything_is_stored(alice):
    limit = conf.MAX_NOTIFICATION_BYTES
    with pytest.raises(TooLarge, match=rf"is {limit + 1} bytes .* at most {limit} .*MAX_NOTIFICATION_BYTES"):
        notify.send(alice, "t", "b" * (limit - 12), data=text_of(12))  # title, body and data: limit + 1
    with pytest.raises(TooLarge):
        notify.send(alice, "t", data=text_of(limit))
    with pytest.raises(TooLarge):  # UTF-8 bytes, not characters
        notify.send(alice, "t", "é" * (limit // 2))
    assert not Notification.objects.filter(recipient=alice).exists()
    assert not Inbox.objects.filter(user=alice, last_seq__gt=0).exists()
    [sent] = notify.send(alice, "t", "b" * (limit - 12), data=text_of(11))  # exactly the limit
    assert len(sent.body) == limit - 12


# --- the bytes of one answer ---------------------------------------------------------------------------------------


def page_through(poll: Any, key: str, after: str) -> tuple[list[int], list[int]]:
    """Poll from ``after`` until a page comes back empty: the ids read, in order, and each answer's size."""
    ids: list[int] = []
    sizes: list[int] = []
    while True:
        reply = poll(after)
        assert reply.status == 200, reply.body[:300]
        page = reply.json()
        if not page[key]:
            assert page["cursor"] == after
            return ids, sizes
        sizes.append(len(reply.body))
        ids += [item["id"] for item in page[key]]
        assert int(page["cursor"]) > int(after)
        after = page["cursor"]


def test_a_room_full_of_messages_near_the_limit_is_read_in_pages_under_the_budget_each_once(
    small_server, make_user, token_for
):
    alice, bob = make_user(), make_user()
    alice_token, bob_token = token_for(alice), token_for(bob)
    name = room()
    # The attack, scaled down: a message 2.5 times the limit, refused whole...
    refused = publish(small_server, alice_token, name, json.dumps({"data": text_of(5000)}).encode())
    assert f"at most {SMALL_MESSAGE}" in expect_error(refused, 413, "too_large")["detail"]
    assert nothing_stored(name)
    # ...and the room filled with messages just under it.
    for _ in range(24):
        reply = publish(small_server, alice_token, name, json.dumps({"data": text_of(SMALL_MESSAGE - 10)}).encode())
        assert reply.status == 201, reply.body[:300]
    stored = list(TopicMessage.objects.filter(topic_id=name).order_by("seq").values_list("pk", flat=True))

    # Bob's first look (no cursor): the newest that fit, and the head as the cursor.
    snapshot = topic_poll(small_server, bob_token, name, limit=100)
    assert snapshot.status == 200 and len(snapshot.body) <= SMALL_BUDGET, len(snapshot.body)
    page = snapshot.json()
    assert page["cursor"] == "24" and 1 < len(page["messages"]) < 24
    assert [m["id"] for m in page["messages"]] == stored[-len(page["messages"]) :]

    # From the start: pages under the budget, each continuing from the last; everything once, in order.
    ids, sizes = page_through(
        lambda after: topic_poll(small_server, bob_token, name, after=after, limit=100, timeout=0), "messages", "0"
    )
    assert ids == stored
    assert max(sizes) <= SMALL_BUDGET and len(sizes) >= 24 / 4, sizes

    # Several streams: the budget holds for each of them.
    reply = small_server.request(
        "GET",
        "/notify/poll",
        params={"streams": f"inbox,{name}", "after": f"inbox:0,{name}:0", "limit": 100},
        headers={"Authorization": f"Bearer {bob_token}"},
    )
    assert reply.status == 200, reply.body[:300]
    part = reply.json()["streams"][name]
    assert [m["id"] for m in part["messages"]] == stored[: len(part["messages"])] and 1 < len(part["messages"]) < 24
    assert part["cursor"] == str(len(part["messages"]))
    assert len(reply.body) <= 2 * SMALL_BUDGET


def test_an_inbox_full_of_large_notifications_is_read_in_pages_under_the_budget_each_once(small_server, alice, token):
    for i in range(24):
        notify.send(alice, f"n{i}", "y" * (SMALL_MESSAGE - 100))
    stored = list(Notification.objects.filter(recipient=alice).order_by("seq").values_list("pk", flat=True))

    snapshot = small_server.poll(token, limit=100)
    assert snapshot.status == 200 and len(snapshot.body) <= SMALL_BUDGET, len(snapshot.body)
    page = snapshot.json()
    assert page["cursor"] == "24" and page["unread_count"] == 24 and 1 < len(page["notifications"]) < 24
    assert [n["id"] for n in page["notifications"]] == stored[-len(page["notifications"]) :]

    ids, sizes = page_through(
        lambda after: small_server.poll(token, after=after, limit=100, timeout=0), "notifications", "0"
    )
    assert ids == stored
    assert max(sizes) <= SMALL_BUDGET and len(sizes) >= 24 / 4, sizes


def test_an_item_larger_than_the_whole_budget_is_answered_alone_so_the_cursor_moves_on(small_server, alice, token):
    # Stored before the limits (or under larger ones): too large for any page, never stuck.
    notify.send(alice, "before")
    notify.send(alice, "huge", "z" * (3 * SMALL_BUDGET))
    notify.send(alice, "after")
    ids, _ = page_through(
        lambda after: small_server.poll(token, after=after, limit=100, timeout=0), "notifications", "0"
    )
    titles = dict(Notification.objects.filter(recipient=alice).values_list("pk", "title"))
    assert [titles[i] for i in ids] == ["before", "huge", "after"]


# --- answered from pub/sub messages, at an exact point ------------------------------------------------------------


@pytest.mark.parametrize("stream", ["inbox", "topic"])
async def test_a_held_poll_woken_by_many_large_messages_answers_from_them_within_the_budget(
    stream, make_user, monkeypatch, close_hubs
):
    """The held poll's check is done; then twelve large items are committed and published, and
    heard by its subscription before it waits: it answers from those messages (no page query
    after the check), with as many as fit in the budget, and its cursor is the last of them."""
    alice = await sync_to_async(make_user)()
    name = f"room:sizes-held-{alice.pk}"
    channel = conf.channel_for_topic(name) if stream == "topic" else conf.channel_for_user(alice.pk)

    def fill() -> None:
        with transaction.atomic():  # published one by one after the commit
            for i in range(12):
                if stream == "topic":
                    notify.publish(name, text_of(SMALL_MESSAGE - 10), sender=alice)
                else:
                    notify.send(alice, f"n{i}", "y" * (SMALL_MESSAGE - 100))

    checked = False

    async def hook(point: str, subscriptions: Any) -> None:
        nonlocal checked
        if point != "checked":
            return
        checked = True
        await sync_to_async(fill)()
        [listening] = [s for s in subscriptions if s.channel == channel]
        async with asyncio.timeout(5):
            while len(listening.messages) < 12:
                await asyncio.sleep(0.001)

    page_reads: list[Any] = []
    module, attribute = (topic_stream, "topic_page_after") if stream == "topic" else (inbox_stream, "page_after")
    real_read = getattr(module, attribute)

    def counting(*args: Any) -> Any:
        if checked:
            page_reads.append(args)
        return real_read(*args)

    monkeypatch.setattr(module, attribute, counting)
    monkeypatch.setattr(polling, "_test_hook", hook)
    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    path = f"/notify/topics/{name}/poll" if stream == "topic" else "/notify/poll"
    with override_settings(NOTIFY={**settings.NOTIFY, "MAX_ANSWER_BYTES": SMALL_BUDGET}):
        response = await client.get(path, {"after": "0", "timeout": "5", "limit": "100"})

    assert response.status_code == 200, response.content[:300]
    assert len(response.content) <= SMALL_BUDGET, len(response.content)
    page = response.json()
    items = page["messages" if stream == "topic" else "notifications"]
    assert 1 < len(items) < 12
    assert page["cursor"] == str(len(items))
    assert page_reads == []  # answered from the messages: no page read after the check


def test_within_budget_stops_before_the_item_that_would_pass_it_and_never_answers_nothing():
    envelope = pages.ENVELOPE_BYTES
    assert pages.within_budget([b"a" * 10] * 5, envelope + 32, len) == [b"a" * 10] * 3  # 10 + 11 + 11
    assert pages.within_budget([b"a" * 10] * 5, envelope + 31, len) == [b"a" * 10] * 2
    assert pages.within_budget([b"a" * 10_000, b"b"], envelope + 10, len) == [b"a" * 10_000]
    assert pages.within_budget([], 1, len) == []


# --- the settings' checks ------------------------------------------------------------------------------------------


def check_ids(**notify_settings: Any) -> list[str]:
    with override_settings(NOTIFY=notify_settings):
        return [problem.id for problem in check_settings()]


@pytest.mark.parametrize("value", [0, -1, "8192", None, True, 1.5])
def test_e015_e016_e017_sizes_must_be_whole_numbers_of_bytes(value):
    assert check_ids(MAX_TOPIC_MESSAGE_BYTES=value) == ["notify.E015"]
    assert check_ids(MAX_NOTIFICATION_BYTES=value) == ["notify.E016"]
    assert check_ids(MAX_ANSWER_BYTES=value) == ["notify.E017"]
    assert check_ids(MAX_ANSWER_BYTES=1023) == ["notify.E017"]


def test_e018_an_answer_budget_below_the_largest_item_accepted():
    assert check_ids(MAX_ANSWER_BYTES=4096, MAX_TOPIC_MESSAGE_BYTES=8192, MAX_NOTIFICATION_BYTES=1000) == [
        "notify.E018"
    ]
    assert check_ids(MAX_ANSWER_BYTES=20_000) == ["notify.E018"]  # below the default MAX_NOTIFICATION_BYTES
    assert check_ids(MAX_ANSWER_BYTES=8192, MAX_TOPIC_MESSAGE_BYTES=2000, MAX_NOTIFICATION_BYTES=2000) == []
