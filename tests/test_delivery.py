"""The delivery guarantees: no loss, no skip under concurrent commits, no duplicates, oldest first."""

from __future__ import annotations

import random
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import AsyncClient

import notify
from notify import streams
from notify.models import Notification
from tests import threads


def follow(server, token, cursor, *, until: int, deadline: float = 30.0) -> list[dict]:
    """Poll along the cursor chain, as a client does, until ``until`` notifications arrived."""
    received: list[dict] = []
    stop = time.monotonic() + deadline
    while len(received) < until and time.monotonic() < stop:
        page = server.poll(token, after=cursor, timeout=5, limit=7).json()
        received += page["notifications"]
        cursor = page["cursor"]
    return received


def test_notification_committed_between_two_polls_comes_with_the_next(server, make_user, token_for):
    alice = make_user()
    token = token_for(alice)
    first = server.poll(token).json()
    notify.send(alice, "sent while nobody polled")
    page = server.poll(token, after=first["cursor"], timeout=10).json()
    assert [n["title"] for n in page["notifications"]] == ["sent while nobody polled"]


@pytest.mark.django_db(transaction=True)
async def test_notification_committed_between_the_check_and_the_wait_wakes_the_poll(monkeypatch, make_user, close_hubs):
    """The subscribe/check race: a send that lands right after the database check.

    The poll is subscribed (and Redis has confirmed it) before it checks, so the
    publish wakes it; checking first and subscribing after would miss it until
    the timeout.
    """
    alice = await sync_to_async(make_user)()
    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    # The held poll's check reads the stream's head (and the page only if the head
    # is past the cursor): the send lands right after that read.
    real_head = streams.head
    calls = []

    def head_then_send(user_id):
        result = real_head(user_id)
        if not calls:
            notify.send(alice, "landed after the check")  # committed and published here
        calls.append(result)
        return result

    monkeypatch.setattr(streams, "head", head_then_send)
    started = time.monotonic()
    response = await client.get("/notify/poll", {"after": "0", "timeout": "20"})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert [n["title"] for n in response.json()["notifications"]] == ["landed after the check"]
    assert calls[0] == 0  # the first check really did find nothing
    assert elapsed < 5


def test_cursor_never_skips_out_of_order_commits(server, make_user, token_for):
    """Two senders to one user: the second cannot commit a number past an uncommitted one.

    A plain autoincrement id fails this: the second transaction takes a higher id,
    commits first, a poll moves the cursor past it, and the first is never seen.
    """
    alice = make_user()
    token = token_for(alice)
    cursor = server.poll(token).json()["cursor"]
    first_sent, release_first = threading.Event(), threading.Event()
    second_done = threading.Event()

    def first_sender():
        with transaction.atomic():
            notify.send(alice, "first")
            first_sent.set()
            release_first.wait(10)

    def second_sender():
        first_sent.wait(10)
        with transaction.atomic():
            notify.send(alice, "second")
        second_done.set()

    senders = [threads.start(first_sender), threads.start(second_sender)]
    assert first_sent.wait(10)
    # While the first is open, the second waits for its number, and a poll moves nowhere.
    assert not second_done.wait(0.5)
    assert server.poll(token, after=cursor, timeout=0).json()["cursor"] == cursor
    release_first.set()
    for thread in senders:
        thread.join(10)

    received = follow(server, token, cursor, until=2)
    assert [n["title"] for n in received] == ["first", "second"]
    seqs = dict(Notification.objects.filter(recipient=alice).values_list("title", "seq"))
    assert seqs["second"] == seqs["first"] + 1


def test_concurrent_senders_reach_a_polling_client_exactly_once_in_order(server, make_user, token_for):
    alice = make_user()
    token = token_for(alice)
    cursor = server.poll(token).json()["cursor"]
    senders, per_sender = 4, 15
    result: list[dict] = []
    poller = threading.Thread(target=lambda: result.extend(follow(server, token, cursor, until=senders * per_sender)))
    poller.start()

    def sender(n: int) -> None:
        rng = random.Random(n)
        for i in range(per_sender):
            with transaction.atomic():
                notify.send(alice, f"s{n}-{i}")
                time.sleep(rng.uniform(0, 0.01))  # commit late, in a random order

    for thread in [threads.start(sender, n) for n in range(senders)]:
        thread.join()
    poller.join(40)

    ids = [n["id"] for n in result]
    assert len(ids) == len(set(ids)) == senders * per_sender
    in_stream_order = list(Notification.objects.filter(recipient=alice).order_by("seq").values_list("id", flat=True))
    assert ids == in_stream_order
    for n in range(senders):  # each sender's own order is kept
        mine = [r["title"] for r in result if r["title"].startswith(f"s{n}-")]
        assert mine == [f"s{n}-{i}" for i in range(per_sender)]


def test_no_duplicates_when_the_client_repolls_from_an_older_cursor(server, make_user, token_for):
    """A client that lost an answer re-asks with its last cursor and gets the same page, not more."""
    alice = make_user()
    token = token_for(alice)
    cursor = server.poll(token).json()["cursor"]
    notify.send(alice, "a")
    notify.send(alice, "b")
    once = server.poll(token, after=cursor, timeout=5).json()
    again = server.poll(token, after=cursor, timeout=5).json()
    assert once == again
    after = server.poll(token, after=once["cursor"], timeout=0).json()
    assert after["notifications"] == []
