"""The delivery guarantees: no loss, no skip under concurrent commits, no duplicates, oldest first."""

from __future__ import annotations

import random
import sqlite3
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection, transaction
from django.test import AsyncClient

import notify
from notify import polling
from notify.models import Notification
from notify.streams import inbox
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
    the timeout, and so would clearing the wake-up flag after the check. The send
    is committed and published right after the check's read of the head, and the
    poll's subscription has heard it before the check returns: exact, not lucky
    (tests/test_races.py does the same on every path and at every point).
    """
    alice = await sync_to_async(make_user)()
    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    subscribed: list = []

    async def hook(point, subscriptions):
        if point == "subscribed":
            subscribed.extend(subscriptions)

    # The held poll's check reads the stream's head (and the page only if the head
    # is past the cursor): the send lands right after that read.
    real_heads = inbox.heads  # the heads of every poll that asked, in one query (notify.batching)
    calls = []

    def head_then_send(user_ids):
        result = real_heads(user_ids)[alice.pk]
        if not calls:
            notify.send(alice, "landed after the check")  # committed and published here
            # Heard by the poll's subscription (the hub reads in the test's event loop,
            # free while this database thread runs) before the check returns.
            deadline = time.monotonic() + 5
            while not subscribed[0].messages:
                assert time.monotonic() < deadline, "the poll's subscription never heard the publish"
                time.sleep(0.001)
        calls.append(result)
        return {alice.pk: result}

    monkeypatch.setattr(polling, "_test_hook", hook)
    monkeypatch.setattr(inbox, "heads", head_then_send)
    started = time.monotonic()
    response = await client.get("/notify/poll", {"after": "0", "timeout": "20"})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert [n["title"] for n in response.json()["notifications"]] == ["landed after the check"]
    assert calls[0].notifications == 0  # the first check really did find nothing
    assert elapsed < 5


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def statement_waiting_for_a_lock(pid: int, timeout: float = 10.0) -> str:
    """The statement PostgreSQL backend ``pid`` runs once it waits for a lock (pg_stat_activity)."""
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type, query FROM pg_stat_activity WHERE pid = %s", [pid])
            wait_kind, query = cursor.fetchone()
        if wait_kind == "Lock":
            return query
        assert time.monotonic() < deadline, f"backend {pid} never waited for a lock; it runs {query!r}"
        time.sleep(0.01)


@pytest.mark.postgres
def test_cursor_never_skips_out_of_order_commits(server, make_user, token_for):
    """Two senders to one user whose transactions commit in the opposite order of their start.

    B begins its transaction first. A begins, and its send reads the user's stream
    head and stops there, its transaction open. Then B sends. Without a lock on the
    head, B would read the same head, take the same number, commit first, and a poll
    would move the cursor past a number A has yet to commit (with autoincrement ids as
    cursors, that is the skip; here A would then fail on the unique (recipient, seq)
    and its thread raise on join). With it, a third connection's SELECT ... FOR UPDATE
    NOWAIT on the head fails while A is open, B is seen waiting (pg_stat_activity) at
    its own SELECT ... FOR UPDATE of the head before it has read a number, a poll in
    between moves nowhere, A commits, then B, and the client following the cursor gets
    both, A's first.

    Alice's Inbox row exists before (she had a notification), and A is stopped after
    locking the head but before updating it: so it is the FOR UPDATE that holds B. (Once
    A has updated the row, B's INSERT ... ON CONFLICT DO NOTHING of the inbox waits for
    A's commit too: PostgreSQL cannot tell whether the key conflicts until then.)

    PostgreSQL only: on SQLite select_for_update does nothing, and the database's
    write lock, taken at BEGIN, serializes whole transactions, so they cannot commit
    out of order there (test_on_sqlite_the_write_lock_serializes_senders).
    """
    if connection.vendor != "postgresql":
        pytest.skip("out-of-order commits need PostgreSQL: SQLite serializes writers at BEGIN")
    alice = make_user()
    token = token_for(alice)
    notify.send(alice, "earlier")  # her Inbox row exists from here on
    cursor = server.poll(token).json()["cursor"]
    assert cursor == "1"
    b_began, a_read_head, b_go, release_a = (threading.Event() for _ in range(4))
    pids: dict[str, int] = {}
    committed: list[str] = []

    def stop_after_reading_the_head(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("SELECT") and '"notify_inbox"' in sql and not a_read_head.is_set():
            a_read_head.set()
            assert release_a.wait(10)
        return result

    def sender_b():
        with transaction.atomic():
            pids["b"] = backend_pid()  # a statement: B's transaction has begun
            b_began.set()
            assert b_go.wait(10)
            notify.send(alice, "second")
            transaction.on_commit(lambda: committed.append("b"))

    def sender_a():
        assert b_began.wait(10)
        with transaction.atomic():
            pids["a"] = backend_pid()
            with connection.execute_wrapper(stop_after_reading_the_head):
                notify.send(alice, "first")
            transaction.on_commit(lambda: committed.append("a"))

    senders = [threads.start(sender_b), threads.start(sender_a)]
    try:
        assert a_read_head.wait(10)
        # A holds the head row: nobody else can lock it now.
        with (
            pytest.raises(OperationalError, match="could not obtain lock"),
            transaction.atomic(),
            connection.cursor() as third,
        ):
            third.execute("SELECT last_seq FROM notify_inbox WHERE user_id = %s FOR UPDATE NOWAIT", [alice.pk])
        # B, begun before A, sends now, and waits for that lock before reading a number.
        b_go.set()
        waiting = statement_waiting_for_a_lock(pids["b"])
        assert waiting.startswith("SELECT") and "FOR UPDATE" in waiting and '"notify_inbox"' in waiting, waiting
        with connection.cursor() as third:
            third.execute("SELECT pid, xact_start FROM pg_stat_activity WHERE pid IN (%s, %s)", [pids["a"], pids["b"]])
            began = dict(third.fetchall())
        assert began[pids["b"]] < began[pids["a"]]
        # A poll in between: nothing is committed past the cursor, so it moves nowhere.
        assert server.poll(token, after=cursor, timeout=0).json() == {
            "cursor": cursor,
            "notifications": [],
            "unread_count": 1,
        }
    finally:
        b_go.set()
        release_a.set()
        threads.join_all(senders, 10)

    assert committed == ["a", "b"]  # the opposite of the order they began in
    received = follow(server, token, cursor, until=2)
    assert [n["title"] for n in received] == ["first", "second"]
    seqs = dict(Notification.objects.filter(recipient=alice).values_list("title", "seq"))
    assert (seqs["first"], seqs["second"]) == (2, 3)


def test_on_sqlite_the_write_lock_serializes_senders(server, make_user, token_for):
    """On SQLite a second sender waits at BEGIN until the first commits: commits come in start order.

    SQLite has no row locks (select_for_update does nothing there): the database's
    write lock serializes writers, and the settings take it at BEGIN
    (``transaction_mode = "IMMEDIATE"``), so a sender holds it for its whole
    transaction. Shown by a third connection, whose BEGIN IMMEDIATE fails at once
    while the first sender is open. A poll meanwhile moves nowhere.
    """
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock; PostgreSQL has test_cursor_never_skips_out_of_order_commits")
    alice = make_user()
    token = token_for(alice)
    notify.send(alice, "earlier")
    cursor = server.poll(token).json()["cursor"]
    first_sent, release_first, second_done = threading.Event(), threading.Event(), threading.Event()

    def first_sender():
        with transaction.atomic():
            notify.send(alice, "first")
            first_sent.set()
            assert release_first.wait(10)

    def second_sender():
        assert first_sent.wait(10)
        with transaction.atomic():
            notify.send(alice, "second")
        second_done.set()

    senders = [threads.start(first_sender), threads.start(second_sender)]
    try:
        assert first_sent.wait(10)
        third = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                third.execute("BEGIN IMMEDIATE")
        finally:
            third.close()
        assert not second_done.wait(0.3)  # the second sender is still waiting
        assert server.poll(token, after=cursor, timeout=0).json()["cursor"] == cursor
    finally:
        release_first.set()
        threads.join_all(senders, 10)

    received = follow(server, token, cursor, until=2)
    assert [n["title"] for n in received] == ["first", "second"]


def test_concurrent_senders_reach_a_polling_client_exactly_once_in_order(server, make_user, token_for):
    """Four senders to one user, committing in a random order; one client following the cursor.

    Alice's Inbox row exists before they start (she had a notification): no sender
    creates it, and each takes its number under the lock on her stream head (on
    PostgreSQL, the FOR UPDATE of the head; on SQLite, the database's write lock).
    A sender that fails (a number taken twice, without the lock) fails the test
    with its own exception, raised when it is joined, not with the client's timeout.
    """
    alice = make_user()
    token = token_for(alice)
    notify.send(alice, "earlier")
    cursor = server.poll(token).json()["cursor"]
    assert cursor == "1"
    senders, per_sender = 4, 15
    result: list[dict] = []
    poller = threads.start(lambda: result.extend(follow(server, token, cursor, until=senders * per_sender)))

    def sender(n: int) -> None:
        rng = random.Random(n)
        for i in range(per_sender):
            with transaction.atomic():
                notify.send(alice, f"s{n}-{i}")
                time.sleep(rng.uniform(0, 0.01))  # commit late, in a random order

    threads.join_all([threads.start(sender, n) for n in range(senders)], 30)
    poller.join(40)

    ids = [n["id"] for n in result]
    assert len(ids) == len(set(ids)) == senders * per_sender
    in_stream_order = list(
        Notification.objects.filter(recipient=alice, seq__gt=1).order_by("seq").values_list("id", flat=True)
    )
    assert ids == in_stream_order
    for n in range(senders):  # each sender's own order is kept
        mine = [r["title"] for r in result if r["title"].startswith(f"s{n}-")]
        assert mine == [f"s{n}-{i}" for i in range(per_sender)]


def test_no_duplicates_when_the_client_repolls_from_an_older_cursor(server, make_user, token_for):
    """A client that lost an answer re-asks with its last cursor and gets the same page, not more.

    The cursor is not 0: from 0, a page query of ``seq >= after`` would answer the
    same as ``seq > after``; from 1 it would repeat the notification already seen.
    """
    alice = make_user()
    token = token_for(alice)
    notify.send(alice, "seen already")
    cursor = server.poll(token).json()["cursor"]
    assert cursor == "1"
    notify.send(alice, "a")
    notify.send(alice, "b")
    once = server.poll(token, after=cursor, timeout=5).json()
    again = server.poll(token, after=cursor, timeout=5).json()
    assert [n["title"] for n in once["notifications"]] == ["a", "b"]
    assert once == again
    after = server.poll(token, after=once["cursor"], timeout=0).json()
    assert after["notifications"] == []
