"""Announcements: one notification to every user, stored once (notify.announce, issue 14).

What a client relies on is what a notification gives it: the announcement arrives in
the inbox answer, in order with the user's own notifications, once along a cursor
chain, counted in the unread count and marked read like one — and a user created
afterwards does not get it. Run against a real uvicorn, Redis and the database.
"""

from __future__ import annotations

import json

import pytest

import notify
from notify.models import ANNOUNCEMENT_IDS_FROM, Announcement, AnnouncementRead, Notification
from tests import threads
from tests.server import expect_error

pytestmark = pytest.mark.django_db(transaction=True)


def titles(page: dict) -> list[str]:
    return [n["title"] for n in page["notifications"]]


def chain(server, token: str, cursor: str, *, limit: int, pages: int = 10) -> tuple[list[dict], str]:
    """Everything after ``cursor`` along the cursor chain, ``limit`` at a time, as a client polls."""
    received: list[dict] = []
    for _ in range(pages):
        page = server.poll(token, after=cursor, timeout=0, limit=limit).json()
        if not page["notifications"]:
            break
        received += page["notifications"]
        cursor = page["cursor"]
    return received, cursor


def read(server, token: str, body: dict) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    reply = server.request("POST", "/notify/read", body=json.dumps(body).encode(), headers=headers)
    assert reply.status == 200, reply.body
    return reply.json()["unread_count"]


def test_an_announcement_wakes_every_held_poll_from_one_row(server, make_user, token_for):
    users = [make_user() for _ in range(3)]
    tokens = [token_for(user) for user in users]
    cursors = [server.poll(token).json()["cursor"] for token in tokens]
    held = [
        threads.start(server.poll, token, after=cursor, timeout=20)
        for token, cursor in zip(tokens, cursors, strict=True)
    ]
    for user in users:
        server.wait_for_held_polls(1, user.pk)

    announcement = notify.announce("Maintenance at 22:00", "Back by 22:30", level="warning")

    pages = [reply.json() for reply in threads.join_all(held, 10)]
    for page in pages:
        [item] = page["notifications"]
        assert item["id"] == ANNOUNCEMENT_IDS_FROM + announcement.pk and item["read"] is False
        assert (item["title"], item["body"], item["level"]) == ("Maintenance at 22:00", "Back by 22:30", "warning")
        assert page["unread_count"] == 1
    # Stored once, whatever the number of users: no row per recipient.
    assert Announcement.objects.count() == 1 and not Notification.objects.exists()
    # The next poll from each answer's cursor has nothing new: held, then empty.
    for token, page in zip(tokens, pages, strict=True):
        assert server.poll(token, after=page["cursor"], timeout=0).json()["notifications"] == []


@pytest.mark.parametrize("limit", [1, 2, 50])
def test_announcements_come_in_order_with_the_users_own_once_along_a_cursor_chain(server, alice, token, limit):
    start = server.poll(token).json()["cursor"]
    notify.send(alice, "mine 1")
    notify.announce("to all 1")
    notify.send(alice, "mine 2")
    notify.announce("to all 2")
    notify.announce("to all 3")
    notify.send(alice, "mine 3")

    received, cursor = chain(server, token, start, limit=limit)

    assert [n["title"] for n in received] == ["mine 1", "to all 1", "mine 2", "to all 2", "to all 3", "mine 3"]
    assert len({n["id"] for n in received}) == 6
    # Resumed from any cursor of the chain: what follows it, once.
    middle, _ = chain(server, token, start, limit=2, pages=1)
    rest, end = chain(server, token, server.poll(token, after=start, timeout=0, limit=2).json()["cursor"], limit=limit)
    assert [n["title"] for n in middle + rest] == [n["title"] for n in received]
    assert server.poll(token, after=end, timeout=0).json()["notifications"] == []
    assert end == cursor


def test_a_cursor_from_before_an_announcement_resumes_across_it(server, alice, token):
    """A client that was away (a cursor without announcements in it, as every cursor was
    before they existed) gets what it missed: the announcement and its own, once."""
    before = server.poll(token).json()["cursor"]
    assert "." not in before  # nothing announced in this database yet for this cursor to carry
    notify.announce("while you were away")
    notify.send(alice, "and this")
    page = server.poll(token, after=before, timeout=0).json()
    assert titles(page) == ["while you were away", "and this"] and page["unread_count"] == 2
    again = server.poll(token, after=page["cursor"], timeout=0).json()
    assert again["notifications"] == [] and again["cursor"] == page["cursor"]


def test_read_state_is_per_user_and_costs_a_row_only_when_read(server, make_user, token_for):
    alice, bob = make_user(), make_user()
    alice_token, bob_token = token_for(alice), token_for(bob)
    first = notify.announce("first")
    notify.announce("second")
    notify.send(alice, "mine")
    assert server.poll(alice_token).json()["unread_count"] == 3
    assert server.poll(bob_token).json()["unread_count"] == 2
    assert not AnnouncementRead.objects.exists()

    assert read(server, alice_token, {"ids": [ANNOUNCEMENT_IDS_FROM + first.pk]}) == 2
    snapshot = server.poll(alice_token).json()
    assert titles(snapshot) == ["second", "mine"] and snapshot["unread_count"] == 2
    # Bob's copy is his own: still unread, in his snapshot and along his cursor chain.
    assert titles(server.poll(bob_token).json()) == ["first", "second"]
    bobs = server.poll(bob_token, after="0", timeout=0).json()["notifications"]
    assert [(n["title"], n["read"]) for n in bobs] == [("first", False), ("second", False)]
    assert AnnouncementRead.objects.count() == 1

    # A page from an old cursor says which are read, for this user.
    page = server.poll(alice_token, after="0", timeout=0).json()
    assert [(n["title"], n["read"]) for n in page["notifications"]] == [
        ("first", True),
        ("second", False),
        ("mine", False),
    ]

    assert read(server, alice_token, {"all": True}) == 0
    assert AnnouncementRead.objects.filter(user=alice).count() == 0  # the mark moved past it
    notify.announce("third")
    assert server.poll(alice_token).json()["unread_count"] == 1
    assert server.poll(bob_token).json()["unread_count"] == 3


def test_marking_another_users_or_an_unknown_announcement_read_changes_nothing(server, make_user, token_for):
    notify.announce("before carol")
    carol = make_user()
    token = token_for(carol)
    [earlier] = Announcement.objects.all()
    assert read(server, token, {"ids": [ANNOUNCEMENT_IDS_FROM + earlier.pk, ANNOUNCEMENT_IDS_FROM + 10**9]}) == 0
    assert not AnnouncementRead.objects.exists()


def test_a_user_created_after_an_announcement_does_not_get_it_but_gets_the_next(server, make_user, token_for):
    make_user()
    notify.announce("before carol joined")
    carol = make_user()
    token = token_for(carol)

    snapshot = server.poll(token).json()
    assert snapshot["notifications"] == [] and snapshot["unread_count"] == 0
    assert server.poll(token, after="0", timeout=0).json()["notifications"] == []
    held = threads.start(server.poll, token, after=snapshot["cursor"], timeout=20)
    server.wait_for_held_polls(1, carol.pk)
    notify.announce("welcome")
    page = threads.join_all([held], 10)[0].json()
    assert titles(page) == ["welcome"] and page["unread_count"] == 1


def test_a_multi_stream_poll_gets_announcements_in_its_inbox_part(server, alice, token):
    room = "room:announcements"
    first = server.request(
        "GET", "/notify/poll", params={"streams": f"inbox,{room}"}, headers={"Authorization": f"Bearer {token}"}
    ).json()
    held = threads.start(
        server.request,
        "GET",
        "/notify/poll",
        params={"streams": f"inbox,{room}", "after": first["cursor"], "timeout": 20},
        headers={"Authorization": f"Bearer {token}"},
    )
    server.wait_for_held_polls(1, alice.pk)
    notify.announce("to everyone")
    page = threads.join_all([held], 10)[0].json()
    assert titles(page["streams"]["inbox"]) == ["to everyone"]
    assert page["streams"][room]["messages"] == []


@pytest.mark.parametrize("after", ["1.x", "1.", ".1", "1.2.3", "-1.1"])
def test_a_malformed_inbox_cursor_is_a_400_that_says_what_is_accepted(server, token, after):
    body = expect_error(server.poll(token, after=after, timeout=0), 400, "invalid_cursor")
    assert "an earlier poll" in body["detail"]


def test_a_cursor_ahead_of_the_announcements_is_refused(server, token):
    notify.announce("one")
    body = expect_error(server.poll(token, after="0.99", timeout=0), 400, "invalid_cursor")
    assert "ahead" in body["detail"]


def test_an_announcement_past_the_size_limit_is_refused_before_anything_is_stored(settings):
    settings.NOTIFY = {**settings.NOTIFY, "MAX_NOTIFICATION_BYTES": 1024}
    with pytest.raises(ValueError, match="MAX_NOTIFICATION_BYTES"):
        notify.announce("big", "x" * 2000)
    assert not Announcement.objects.exists()


def test_the_history_counts_announcements_and_reads_them_as_the_poll_does(server, alice, token):
    announcement = notify.announce("to all")
    notify.send(alice, "mine")
    headers = {"Authorization": f"Bearer {token}"}
    count = server.request("GET", "/notify/history/unread_count", headers=headers).json()["unread_count"]
    assert count == server.poll(token).json()["unread_count"] == 2
    reply = server.request(
        "POST",
        "/notify/history/read",
        body=json.dumps({"ids": [ANNOUNCEMENT_IDS_FROM + announcement.pk]}).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert reply.json()["unread_count"] == 1 == server.poll(token).json()["unread_count"]
