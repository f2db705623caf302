"""notify.client following several streams (inbox and topics) in one held poll, end to end against the real server."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

import notify
from notify.client import NotifyClient, RequestError, StreamItem
from notify.client.client import join_cursor, split_cursor
from tests.client_fakes import following, json_line, until
from tests.test_client import end, start_cli

CLIENT_LOGGER = "notify.client"

send = sync_to_async(notify.send)
publish = sync_to_async(notify.publish)


@pytest.fixture
def room() -> str:
    return f"room:client-{os.urandom(4).hex()}"


def received(got: Any) -> list[tuple[str, Any]]:
    """(stream, title or text) of what a multi-stream client yielded."""
    return [(s, i["title"] if s == "inbox" else i["data"]["text"]) for s, i in got.received]


async def test_one_client_follows_the_inbox_and_two_topics_in_order_and_once(server, alice, token, room):
    other = f"{room}:b"
    async with following(server.url, token, streams=["inbox", room, other], timeout=5, limit=4) as (client, got):
        await until(lambda: client.cursor is not None)  # it has its cursors: nothing sent now can be missed
        expected = []
        for i in range(3):
            await publish(room, {"text": f"a{i}"})
            expected.append((room, f"a{i}"))
            await send(alice, f"n{i}")
            expected.append(("inbox", f"n{i}"))
            await publish(other, {"text": f"b{i}"}, sender=alice)
            expected.append((other, f"b{i}"))
        for i in range(6):  # more than limit: pages one after the other
            await publish(room, {"text": f"burst{i}"})
            expected.append((room, f"burst{i}"))
        await got.wait_for(len(expected))
        await asyncio.sleep(0.3)  # time for anything extra to show up

    assert all(isinstance(item, StreamItem) for item in got.received)
    got_pairs = received(got)
    assert sorted(got_pairs) == sorted(expected)  # each once, none lost
    for stream in ("inbox", room, other):  # each stream in its own order
        assert [t for s, t in got_pairs if s == stream] == [t for s, t in expected if s == stream]
    assert split_cursor(client.cursor) == {"inbox": "3", room: "9", other: "3"}
    assert client.unread_count == 3


async def test_a_saved_compound_cursor_resumes_every_stream(server, alice, token, room):
    saved: list[str] = []
    async with following(
        server.url, token, streams=["inbox", room, f"{room}:gone"], timeout=5, on_cursor=saved.append
    ) as (
        client,
        got,
    ):
        await until(lambda: saved)
        await publish(room, {"text": "seen"})
        await got.wait_for(1)
        await until(lambda: len(saved) == 2)

    await publish(room, {"text": "missed"})
    await send(alice, "missed too")
    # A stream no longer followed is dropped from the saved cursor; a new one starts from its newest.
    async with following(server.url, token, streams=[room, "inbox"], cursor=saved[-1], timeout=5) as (client, got):
        await got.wait_for(2)
        await asyncio.sleep(0.3)
    assert sorted(received(got)) == [("inbox", "missed too"), (room, "missed")]


async def test_a_topic_cursor_past_retention_is_logged_and_resumed_from_the_oldest_kept(
    server, alice, token, room, caplog
):
    caplog.set_level(logging.WARNING, logger=CLIENT_LOGGER)
    with override_settings(NOTIFY={**_notify(), "TOPIC_RETENTION": {"*": {"keep_last": 2, "keep_seconds": None}}}):
        for i in range(1, 6):
            await publish(room, {"text": i})
    # The saved cursor says "seen up to 1"; the topic keeps only 4 and 5 now.
    async with following(server.url, token, streams=["inbox", room], cursor=f"inbox:0,{room}:1", timeout=5) as (
        client,
        got,
    ):
        await got.wait_for(2)
        await asyncio.sleep(0.3)

    assert received(got) == [(room, 4), (room, 5)]
    assert split_cursor(client.cursor)[room] == "5"
    assert any("no longer keeps" in r.getMessage() and "'3'" in r.getMessage() for r in caplog.records)


async def test_a_forbidden_topic_raises_request_error(server, token):
    async with NotifyClient(server.url, token, streams=["inbox", "lobby"]) as client:
        with pytest.raises(RequestError, match="403 forbidden") as raised:
            await anext(client)
    assert raised.value.status == 403


async def test_publish_posts_and_the_following_client_gets_it(server, alice, token, room):
    async with following(server.url, token, streams=[room], timeout=5) as (client, got):
        await until(lambda: client.cursor is not None)
        message = await client.publish(room, {"text": "from the client"})
        await got.wait_for(1)
    assert message["sender"]["id"] == alice.pk
    assert got.received == [StreamItem(room, message)]


def test_without_streams_the_client_is_unchanged_and_bad_streams_are_refused():
    client = NotifyClient("http://127.0.0.1:1", "ntf_x_y")
    assert client.streams is None
    for streams in ([], ["inbox", "inbox"], "inbox", ["a,b"], [f"room:{i}" for i in range(11)]):
        with pytest.raises(ValueError, match="streams"):
            NotifyClient("http://127.0.0.1:1", "ntf_x_y", streams=streams)
    assert split_cursor("inbox:6,room:42:17") == {"inbox": "6", "room:42": "17"}
    assert join_cursor({"room:42": "17", "inbox": "6"}, ["inbox", "room:42"]) == "inbox:6,room:42:17"


def test_cli_follows_several_streams_as_json_lines(server, alice, token, room):
    process, lines = start_cli(
        "--url", server.url, "--timeout", "5", "--stream", "inbox", "--stream", room, token=token
    )
    try:
        notify.send(alice, "to the inbox")
        first = json_line(lines.get(timeout=15))
        notify.publish(room, {"text": "to the room"})
        second = json_line(lines.get(timeout=15))
    finally:
        status, stderr = end(process, signal.SIGTERM)
    assert first["stream"] == "inbox" and first["item"]["title"] == "to the inbox"
    assert second == {"stream": room, "item": second["item"]} and second["item"]["data"] == {"text": "to the room"}
    assert status == 0, stderr


def _notify() -> dict:
    from django.conf import settings

    return dict(settings.NOTIFY)
