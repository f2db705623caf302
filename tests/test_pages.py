"""Answering a woken poll from its pub/sub messages, and when not to."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

import notify
from notify.conf import conf
from notify.cursor import InboxCursor
from notify.pages import announcement_message, inbox_body, message
from notify.streams import Result, inbox
from notify.streams.inbox import InboxStream


def msg(seq: int, unread: int | None = 1) -> bytes:
    return message(seq, unread, {"id": seq, "title": f"n{seq}"})


def page_from_messages(messages: list[bytes], after: int, limit: int) -> Result | None:
    """User 1's page from messages on their own channel, its cursor the notifications' part."""
    stream = InboxStream(1)
    page = stream.from_messages({stream.channel: messages}, InboxCursor(after, 3), limit)
    if page is not None:
        assert isinstance(page.cursor, InboxCursor) and page.cursor.announcements == 3  # untouched
        page.cursor = page.cursor.notifications
    return page


def titles(page: Result | None) -> list[str]:
    assert page is not None
    return [json.loads(n)["title"] for n in page.items]


def test_messages_that_continue_the_cursor_make_the_page():
    page = page_from_messages([msg(6, 3), msg(5, 2)], after=4, limit=50)
    assert titles(page) == ["n5", "n6"]
    assert page is not None and (page.cursor, page.unread) == (6, 3)


def test_a_gap_before_the_first_message_means_ask_the_database():
    assert page_from_messages([msg(6)], after=4, limit=50) is None


def test_only_the_unbroken_run_is_answered():
    page = page_from_messages([msg(5), msg(7)], after=4, limit=50)
    assert titles(page) == ["n5"] and page is not None and page.cursor == 5


def test_already_delivered_and_repeated_messages_are_skipped():
    page = page_from_messages([msg(3), msg(5), msg(5)], after=4, limit=50)
    assert titles(page) == ["n5"]


def test_the_limit_is_kept():
    page = page_from_messages([msg(5), msg(6), msg(7)], after=4, limit=2)
    assert titles(page) == ["n5", "n6"] and page is not None and page.cursor == 6


def test_an_unknown_unread_count_or_a_garbled_message_means_ask_the_database():
    assert page_from_messages([msg(5, None)], after=4, limit=50) is None
    assert page_from_messages([b"garbage"], after=4, limit=50) is None
    assert page_from_messages([], after=4, limit=50) is None


def test_the_body_is_the_documented_json():
    body = json.loads(inbox_body(InboxCursor(7), [b'{"id":1}'], 2))
    assert body == {"cursor": "7", "notifications": [{"id": 1}], "unread_count": 2}
    # Once announcements exist, the inbox cursor carries both parts.
    assert json.loads(inbox_body(InboxCursor(7, 2), [], 0))["cursor"] == "7.2"


def announced(seq: int, last_user_id: int) -> bytes:
    return announcement_message(seq, last_user_id, {"id": 2**50 + seq, "title": f"a{seq}"})


def test_announcements_continue_their_part_of_the_cursor_for_the_users_that_get_them():
    stream = InboxStream(5)
    heard = {conf.announcements_channel: [announced(3, 9), announced(4, 4)]}
    page = stream.from_messages(heard, InboxCursor(10, 2), 50)
    # User 5 gets the one made when user 9 existed, not the one made before user 5 was.
    assert titles(page) == ["a3"] and page is not None and page.cursor == InboxCursor(10, 4)
    assert page.unread is None  # counted later, with other polls' (InboxStream.finish)
    assert stream.from_messages({conf.announcements_channel: [announced(4, 9)]}, InboxCursor(10, 2), 50) is None
    # Both kinds at once: the database merges them in order.
    both = {stream.channel: [msg(11)], conf.announcements_channel: [announced(3, 9)]}
    assert stream.from_messages(both, InboxCursor(10, 2), 50) is None


@pytest.fixture
def page_queries(monkeypatch):  # type: ignore[no-untyped-def]
    """The inbox page queries (``inbox.page_after``) made from now on."""
    made = []
    real_page_after = inbox.page_after

    def counting_page_after(*args):  # type: ignore[no-untyped-def]
        made.append(args)
        return real_page_after(*args)

    monkeypatch.setattr(inbox, "page_after", counting_page_after)
    return made


@pytest.mark.django_db(transaction=True)
async def test_a_woken_poll_answers_from_the_message_without_querying_again(make_user, page_queries, close_hubs):
    alice = await sync_to_async(make_user)()
    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    poll = asyncio.create_task(client.get("/notify/poll", {"after": "0", "timeout": "20"}))
    await asyncio.sleep(0.5)
    await notify.asend(alice, "straight from Redis", data={"x": "ü"})
    response = await poll

    body = response.json()
    assert [n["title"] for n in body["notifications"]] == ["straight from Redis"]
    assert body["notifications"][0]["data"] == {"x": "ü"}
    assert body["unread_count"] == 1 and body["cursor"] == "1"
    # No page query at all: the check before waiting found the head at the cursor
    # (so read no page), and the wake-up was answered from the message.
    assert page_queries == []


@pytest.mark.django_db(transaction=True)
async def test_a_poll_that_times_out_asks_for_no_page_and_still_counts_unread(make_user, page_queries, close_hubs):
    alice = await sync_to_async(make_user)()
    await notify.asend(alice, "unread before")
    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    response = await client.get("/notify/poll", {"after": "1", "timeout": "0.5"})

    assert response.json() == {"cursor": "1", "notifications": [], "unread_count": 1}
    # Subscribed all along and nothing published: the timeout needs no second look.
    assert page_queries == []
