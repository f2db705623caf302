"""Grouping (notify.grouping, docs/grouping.md): sends of one kind and group collapse into one
notification, and a client following its cursor still sees every send once."""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

import notify
from notify import grouping
from notify.models import Notification
from tests import threads
from tests.server import Server

COMMENT = {"kind": "blog.comment", "group": "post:42"}
TITLE = "{actors} commented on Post 42"


def comment(user: Any, actor: str, **options: Any) -> Notification:
    [sent] = notify.send(user, TITLE, **{**COMMENT, **options}, actor=actor)
    return sent


def unread(user: Any) -> list[Notification]:
    return list(Notification.objects.filter(recipient=user).unread().order_by("seq"))


def page(server: Server, token: str, **params: Any) -> dict[str, Any]:
    reply = server.poll(token, **params)
    assert reply.status == 200, reply.body[:500]
    return reply.json()


class Client:
    """What a client keeps, by the client rule (docs/grouping.md): an item with a group replaces
    every earlier item of the same kind, key and first_id."""

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []

    def take(self, notifications: list[dict[str, Any]]) -> None:
        for n in notifications:
            self.received.append(n)
            group = n["group"]
            if group:
                for other in list(self.items.values()):
                    same = other["group"] and (other["kind"], other["group"]["key"], other["group"]["first_id"]) == (
                        n["kind"],
                        group["key"],
                        group["first_id"],
                    )
                    if same and other["id"] < n["id"]:
                        del self.items[other["id"]]
            self.items[n["id"]] = n


# --- the rule ------------------------------------------------------------------------------------


def test_a_grouped_send_replaces_the_unread_one_with_one_that_counts_both(alice):
    first = comment(alice, "alice")
    second = comment(alice, "bob")
    third = comment(alice, "carol")
    [open_one] = unread(alice)
    assert open_one.pk == third.pk
    assert (open_one.seq, second.seq, first.seq) == (3, 2, 1)  # each send a new number: cursors move on
    assert (open_one.group_count, open_one.group_actors) == (3, ["carol", "bob", "alice"])
    assert open_one.title == "carol and 2 others commented on Post 42"
    assert open_one.as_dict()["group"] == {
        "key": "post:42",
        "count": 3,
        "actors": ["carol", "bob", "alice"],
        "first_id": first.pk,
    }
    assert not Notification.objects.filter(pk__in=[first.pk, second.pk]).exists()


def test_an_ungrouped_notification_has_group_null_and_a_first_grouped_one_its_own_id(alice):
    [plain] = notify.send(alice, "plain", kind="blog.comment")
    grouped = comment(alice, "alice")
    assert plain.as_dict()["group"] is None
    assert grouped.as_dict()["group"] == {"key": "post:42", "count": 1, "actors": ["alice"], "first_id": grouped.pk}
    assert grouped.title == "alice commented on Post 42"
    assert notify.announce("to all").as_dict()["group"] is None  # announcements are never grouped


def test_the_actors_are_the_newest_distinct_ones_and_bounded(alice):
    with override_settings(NOTIFY={"GROUP_MAX_ACTORS": 3}):
        for actor in ["a", "b", "a", "c", "d", "a"]:
            last = comment(alice, actor)
    assert (last.group_count, last.group_actors) == (6, ["a", "d", "c"])
    # The list is full, so a person may have been dropped: every send counts as one more.
    assert last.title == "a and 5 others commented on Post 42"


def test_people_are_counted_exactly_while_the_actors_fit(alice):
    for actor in ["alice", "bob", "alice", "alice"]:
        last = comment(alice, actor)
    assert last.group_count == 4
    assert last.title == "alice and bob commented on Post 42"


def test_a_read_notification_is_never_collapsed_into(alice):
    first = comment(alice, "alice")
    Notification.objects.filter(pk=first.pk).mark_read()
    second = comment(alice, "bob")
    assert Notification.objects.filter(pk=first.pk).exists()  # the read one stays, as it was
    assert (second.group_count, second.group_actors, second.group_first) == (1, ["bob"], None)
    assert second.as_dict()["group"]["first_id"] == second.pk  # a new group: the client keeps the read one
    assert [n.pk for n in unread(alice)] == [second.pk]


def test_a_notification_older_than_the_window_starts_a_new_group(alice):
    with override_settings(NOTIFY={"GROUP_WINDOW": 60}):
        first = comment(alice, "alice")
        Notification.objects.filter(pk=first.pk).update(created_at=timezone.now() - datetime.timedelta(seconds=61))
        second = comment(alice, "bob")
        third = comment(alice, "carol")  # the window runs from the latest send: it continues the new group
    assert [n.pk for n in unread(alice)] == [first.pk, third.pk]
    assert (third.group_count, third.group_first) == (2, second.pk)
    assert third.as_dict()["group"]["first_id"] != first.pk  # two groups: a client lists both


def test_window_none_groups_however_old_and_zero_never(alice, make_user):
    with override_settings(NOTIFY={"GROUP_WINDOW": None}):
        first = comment(alice, "alice")
        Notification.objects.filter(pk=first.pk).update(created_at=timezone.now() - datetime.timedelta(days=3650))
        assert comment(alice, "bob").group_count == 2
    bob = make_user()
    with override_settings(NOTIFY={"GROUP_WINDOW": 0}):
        comment(bob, "alice")
        last = comment(bob, "carol")
    assert (last.group_count, last.title, len(unread(bob))) == (1, "carol commented on Post 42", 2)


def test_another_kind_or_key_is_another_group(alice):
    comment(alice, "alice")
    notify.send(alice, TITLE, kind="blog.like", group="post:42", actor="bob")
    notify.send(alice, TITLE, kind="blog.comment", group="post:43", actor="carol")
    notify.send(alice, "plain", kind="blog.comment")
    assert [n.group_count for n in unread(alice)] == [1, 1, 1, 1]


def test_each_recipient_is_grouped_on_their_own_in_one_send(alice, make_user):
    bob, carol = make_user(), make_user()
    comment(alice, "x")
    Notification.objects.filter(recipient=alice).mark_read()
    comment(bob, "y")
    sent = notify.send([alice, bob, carol], TITLE, **COMMENT, actor="z")
    by_user = {n.recipient_id: n for n in sent}
    assert [by_user[u.pk].group_count for u in (alice, bob, carol)] == [1, 2, 1]
    assert by_user[bob.pk].title == "z and y commented on Post 42"
    assert [len(unread(u)) for u in (alice, bob, carol)] == [1, 1, 1]


def test_a_rolled_back_grouped_send_leaves_the_open_one(alice):
    first = comment(alice, "alice")
    with pytest.raises(RuntimeError), transaction.atomic():
        comment(alice, "bob")
        raise RuntimeError("rolled back")
    assert [(n.pk, n.group_count) for n in unread(alice)] == [(first.pk, 1)]


def test_an_email_only_notification_is_neither_grouped_nor_collapsed_into(alice):
    from notify import preferences

    comment(alice, "alice")
    preferences.set_rule(alice, kind="blog", page=False, email=True)
    with override_settings(NOTIFY={"EMAIL_DIGESTS": True}):
        email_only = comment(alice, "bob")
    assert (email_only.seq, email_only.group_count, email_only.title) == (None, 1, "bob commented on Post 42")
    preferences.remove_rule(alice, kind="blog")
    assert comment(alice, "carol").group_count == 2  # into the one in the page, not the email-only one


def test_a_long_actors_text_is_cut_to_the_titles_length(alice):
    long_name = "n" * grouping.ACTOR_MAX_LENGTH
    comment(alice, long_name)
    last = notify.send(alice, "{actors} and {actors} commented", **COMMENT, actor="m" * 150)[0]
    assert len(last.title) == 200 and last.title.endswith("…")


# --- the text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actors", "count", "text"),
    [
        (["alice"], 1, "alice"),
        (["alice", "bob"], 2, "alice and bob"),
        (["alice"], 2, "alice and 1 other"),
        (["alice", "bob", "carol"], 4, "alice and 3 others"),
        ([], 1, "1 person"),
        ([], 3, "3 people"),
    ],
)
def test_actors_text(actors, count, text):
    assert grouping.actors_text(actors, count) == text


def test_only_the_actors_placeholder_is_replaced_in_the_title(alice):
    sent = notify.send(alice, "{actors} {0} {actors.__class__} {}", **COMMENT, actor="alice")[0]
    assert sent.title == "alice {0} {actors.__class__} {}"


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"group": "post:42"}, ValueError, "needs a kind"),
        ({"kind": "k", "group": "x" * 201}, ValueError, "a group is 1 to 200 characters"),
        ({"kind": "k", "group": "post 42"}, ValueError, "a group is 1 to 200 characters"),
        ({"kind": "k", "group": "pöst"}, ValueError, "a group is 1 to 200 characters"),
        ({"kind": "k", "group": 42}, TypeError, "group must be a string"),
        ({"kind": "k", "group": "g", "actor": 7}, TypeError, "actor must be a string"),
        ({"kind": "k", "group": "g", "actor": "x" * 151}, ValueError, "at most 150"),
        ({"kind": "k", "group": "g", "actor": "  "}, ValueError, "printable"),
        ({"kind": "k", "group": "g", "actor": "a\nb"}, ValueError, "printable"),
        ({"kind": "k", "actor": "alice"}, ValueError, "only with a group"),
        ({"kind": "k", "group": "g", "deliver_at": "future"}, ValueError, "reminder .* cannot be grouped"),
    ],
)
def test_send_refuses_bad_grouping_saying_what_is_accepted(alice, options, error, match):
    if options.get("deliver_at") == "future":
        options = {**options, "deliver_at": timezone.now() + datetime.timedelta(hours=1)}
    with pytest.raises(error, match=match):
        notify.send(alice, "t", **options)
    assert not Notification.objects.exists()


def test_two_of_one_group_for_one_recipient_in_one_insert_are_refused(alice):
    twins = [Notification(recipient=alice, title="t", **COMMENT) for _ in range(2)]
    with pytest.raises(grouping.GroupingError, match="send them one after the other"):
        Notification.objects.bulk_create(twins)
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("settings", "check_id"),
    [
        ({"GROUP_WINDOW": -1}, "notify.E050"),
        ({"GROUP_WINDOW": "1 day"}, "notify.E050"),
        ({"GROUP_WINDOW": float("inf")}, "notify.E050"),
        ({"GROUP_WINDOW": True}, "notify.E050"),
        ({"GROUP_MAX_ACTORS": 0}, "notify.E051"),
        ({"GROUP_MAX_ACTORS": 101}, "notify.E051"),
        ({"GROUP_MAX_ACTORS": 2.5}, "notify.E051"),
    ],
)
def test_checks_refuse_bad_grouping_settings(settings, check_id):
    from notify.checks import check_settings

    with override_settings(NOTIFY=settings):
        assert [problem.id for problem in check_settings()] == [check_id]


@pytest.mark.parametrize("settings", [{"GROUP_WINDOW": None}, {"GROUP_WINDOW": 0}, {"GROUP_MAX_ACTORS": 100}])
def test_checks_accept_grouping_settings_within_bounds(settings):
    from notify.checks import check_settings

    with override_settings(NOTIFY=settings):
        assert check_settings() == []


# --- along a cursor chain, over HTTP -------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 50])
def test_a_client_polling_while_grouped_sends_arrive_sees_every_send_once(server, alice, token, limit):
    """Grouped and plain sends, each sent once a poll has taken the previous one or not, in turn.

    The client keeps what the client rule keeps. It receives no id twice, every plain notification
    exactly once, and each group item's count one above the last it saw or more (several collapses
    between two polls); at the end its list is exactly what is unread."""
    cursor = page(server, token)["cursor"]
    client = Client()
    sends = 12
    for i in range(sends):
        if i % 3 == 2:
            notify.send(alice, f"plain {i}", kind="blog.comment")
        else:
            comment(alice, f"u{i % 5}")
        if i % 2:  # half the sends wait for the client: several collapses between two of its polls
            while True:
                answer = page(server, token, after=cursor, limit=limit, timeout=0)
                client.take(answer["notifications"])
                cursor = answer["cursor"]
                if not answer["notifications"]:
                    break
    while True:
        answer = page(server, token, after=cursor, limit=limit, timeout=0)
        if not answer["notifications"]:
            break
        client.take(answer["notifications"])
        cursor = answer["cursor"]

    ids = [n["id"] for n in client.received]
    assert len(ids) == len(set(ids)), "an item came twice"
    plain = [n["title"] for n in client.received if n["group"] is None]
    assert plain == [f"plain {i}" for i in range(sends) if i % 3 == 2]
    counts = [n["group"]["count"] for n in client.received if n["group"]]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
    assert counts[-1] == sum(1 for i in range(sends) if i % 3 != 2)
    assert sorted(client.items) == [n.pk for n in unread(alice)]
    assert answer["unread_count"] == len(unread(alice)) == len(plain) + 1


@pytest.mark.parametrize("limit", [1, 2, 50])
def test_a_client_resuming_from_an_old_cursor_gets_the_latest_group_item_once(server, alice, token, limit):
    comment(alice, "before")
    cursor = page(server, token)["cursor"]
    seen_first = Client()
    seen_first.take(page(server, token)["notifications"])  # it had the group's first notification
    for i, actor in enumerate(["a", "b", "c", "d"]):
        comment(alice, actor)
        notify.send(alice, f"plain {i}")
    received = Client()
    while True:
        answer = page(server, token, after=cursor, limit=limit, timeout=0)
        if not answer["notifications"]:
            break
        received.take(answer["notifications"])
        seen_first.take(answer["notifications"])
        cursor = answer["cursor"]
    grouped = [n for n in received.received if n["group"]]
    assert [n["group"]["count"] for n in grouped] == [5]
    assert [n["title"] for n in received.received if not n["group"]] == [f"plain {i}" for i in range(4)]
    # The group's first notification, which the client had, is replaced by the rule.
    assert sorted(seen_first.items) == sorted(received.items) == [n.pk for n in unread(alice)]


def test_a_client_following_its_cursor_beside_a_sending_thread_sees_every_send_once(server, alice, token):
    """The same, with the sends made by a thread of their own while the client polls with limit 1
    (every page a single notification): whatever each poll finds, the chain holds."""
    cursor = page(server, token)["cursor"]
    client, sends, done = Client(), 30, threading.Event()

    def sender() -> None:
        for i in range(sends):
            if i % 4 == 3:
                notify.send(alice, f"plain {i}")
            else:
                comment(alice, f"u{i % 7}")
        done.set()

    running = threads.start(sender)
    grouped_sends = sum(1 for i in range(sends) if i % 4 != 3)
    deadline = time.monotonic() + 30
    while True:
        answer = page(server, token, after=cursor, limit=1, timeout=0 if done.is_set() else 1)
        client.take(answer["notifications"])
        cursor = answer["cursor"]
        counts = [n["group"]["count"] for n in client.received if n["group"]]
        if done.is_set() and not answer["notifications"] and counts and counts[-1] == grouped_sends:
            break
        assert time.monotonic() < deadline, client.received
    running.join(10)

    ids = [n["id"] for n in client.received]
    assert len(ids) == len(set(ids))
    assert [n["title"] for n in client.received if not n["group"]] == [f"plain {i}" for i in range(3, sends, 4)]
    assert counts == sorted(set(counts))
    assert sorted(client.items) == [n.pk for n in unread(alice)]


def test_saving_a_grouped_notification_directly_groups_it_too(alice):
    first = comment(alice, "alice")
    saved = Notification.objects.create(recipient=alice, title=TITLE, group_actors=["bob"], **COMMENT)
    assert (saved.group_count, saved.group_first, saved.title) == (2, first.pk, "bob and alice commented on Post 42")
    assert [n.pk for n in unread(alice)] == [saved.pk]


def test_a_held_poll_is_answered_with_the_grouped_notification_and_the_right_unread_count(server, alice, token):
    comment(alice, "alice")
    cursor = page(server, token)["cursor"]
    answer: dict[str, Any] = {}
    poller = threads.start(lambda: answer.update(page(server, token, after=cursor, timeout=20)))
    server.wait_for_held_polls(1, alice.pk)
    comment(alice, "bob")
    poller.join(20)
    [n] = answer["notifications"]
    assert (n["title"], n["group"]["count"], answer["unread_count"]) == ("bob and alice commented on Post 42", 2, 1)


def test_the_history_lists_the_grouped_notification_not_what_it_replaced(server, alice, token):
    for actor in ["a", "b", "c"]:
        comment(alice, actor)
    reply = server.request("GET", "/notify/history", headers={"Authorization": f"Bearer {token}"})
    listed = reply.json()
    assert [(n["title"], n["group"]["count"]) for n in listed["notifications"]] == [
        ("c and 2 others commented on Post 42", 3)
    ]
    assert listed["unread_count"] == 1


def test_marking_the_replaced_id_read_does_nothing_and_the_count_stays_right(server, alice, token):
    first = comment(alice, "a")
    comment(alice, "b")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    reply = server.request("POST", "/notify/read", headers=headers, body=json.dumps({"ids": [first.pk]}).encode())
    assert reply.status == 200 and reply.json()["unread_count"] == 1


# --- concurrent senders --------------------------------------------------------------------------


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def waiting_for_a_lock(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) AND wait_event_type = 'Lock'", [pids]
            )
            if cursor.fetchone()[0] == len(pids):
                return
        assert time.monotonic() < deadline, "the senders never all waited for a lock"
        time.sleep(0.01)


@pytest.mark.postgres
@pytest.mark.parametrize("open_group", [True, False], ids=["into-an-open-group", "no-open-group-yet"])
def test_concurrent_grouped_sends_are_all_counted_in_one_notification(alice, open_group):
    """Four senders start together while the test holds alice's stream head (FOR UPDATE on her
    Inbox row, from a transaction of its own), and are let go once PostgreSQL shows all four
    waiting for a lock: whatever each read before that lock, it read while the others could read
    the same. Looking the open group up after taking the lock, each finds what the one before it
    committed: one unread notification that counts every send. Looked up before, all four find
    the same state (the same open one, or none) and the count is lost."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: SQLite's write lock serializes whole senders (the SQLite test below)")
    notify.send(alice, "earlier")  # her Inbox row exists
    if open_group:
        comment(alice, "first")
    senders, pids, ready = 4, [], threading.Barrier(5)

    def sender(n: int) -> None:
        with transaction.atomic():
            pids.append(backend_pid())
            ready.wait(10)
            comment(alice, f"s{n}")

    with transaction.atomic(), connection.cursor() as holder:
        holder.execute("SELECT last_seq FROM notify_inbox WHERE user_id = %s FOR UPDATE", [alice.pk])
        running = [threads.start(sender, n) for n in range(senders)]
        ready.wait(10)
        waiting_for_a_lock(pids)
    threads.join_all(running, 20)

    [open_one] = [n for n in unread(alice) if n.group]
    assert open_one.group_count == senders + open_group
    assert len(open_one.group_actors) == senders + open_group


def test_concurrent_grouped_sends_on_any_database_count_every_send(alice):
    """Four threads sending five each to one recipient: one unread notification counting all 20
    (on SQLite the write lock serializes the senders; PostgreSQL: the deterministic test above)."""
    notify.send(alice, "earlier")
    start = threading.Barrier(4)

    def sender(n: int) -> None:
        start.wait(10)
        for i in range(5):
            comment(alice, f"s{n}-{i}")

    threads.join_all([threads.start(sender, n) for n in range(4)], 30)
    [open_one] = [n for n in unread(alice) if n.group]
    assert open_one.group_count == 20
    assert Notification.objects.filter(recipient=alice).count() == 2


@pytest.mark.postgres
def test_a_mark_read_racing_a_grouped_send_is_never_lost(alice):
    """The test marks the open notification read in a transaction of its own and holds it; a
    grouped send then reaches its look-up, which locks the open rows (FOR UPDATE) and so waits
    (seen in pg_stat_activity); the test commits. The send reads the row again, finds it read and
    starts a new group: the read one stays read and stays. Without the row lock the send would
    count the row it read as unread, delete it and undo the read."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: on SQLite the write lock orders the read and the send")
    first = comment(alice, "alice")
    pids: list[int] = []
    ready = threading.Event()

    def sender() -> Notification:
        with transaction.atomic():
            pids.append(backend_pid())
            ready.set()
            return comment(alice, "bob")

    with transaction.atomic():
        assert Notification.objects.filter(pk=first.pk).mark_read() == 1
        running = threads.start(sender)
        assert ready.wait(10)
        waiting_for_a_lock(pids)
    [second] = threads.join_all([running], 10)

    assert Notification.objects.get(pk=first.pk).read
    assert (second.group_count, second.group_first) == (1, None)
    assert [n.pk for n in unread(alice)] == [second.pk]


# --- the command and the Python client -----------------------------------------------------------


def test_notify_send_groups_with_group_and_actor(alice):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    for actor in ("bob", "carol"):
        call_command("notify_send", alice.username, TITLE, "--kind", "blog.comment", "--group", "post:42",
                     "--actor", actor, stdout=out)  # fmt: skip
    [open_one] = unread(alice)
    assert out.getvalue().splitlines()[-1] == f"Sent notification {open_one.pk} to {alice}, counting 2 in its group."
    assert open_one.title == "carol and bob commented on Post 42"
    with pytest.raises(CommandError, match="needs a kind"):
        call_command("notify_send", alice.username, "t", "--group", "post:42")


async def test_the_python_client_yields_the_group_and_applies_the_rule(server, alice, token):
    from asgiref.sync import sync_to_async

    from notify.client import NotifyClient, replaces

    first = await sync_to_async(comment)(alice, "bob")
    second = await sync_to_async(comment)(alice, "carol")
    async with NotifyClient(server.url, token, cursor="0", timeout=1) as client:
        [received] = [n async for n in _take(client, 1)]
    assert received["id"] == second.pk
    assert received["group"] == {"key": "post:42", "count": 2, "actors": ["carol", "bob"], "first_id": first.pk}
    had = {**received, "id": first.pk, "group": {**received["group"], "count": 1}}
    assert replaces(received, had) and not replaces(had, received)
    assert not replaces(received, {**had, "group": {**had["group"], "first_id": 999}})  # an earlier group


async def _take(client: Any, n: int) -> Any:
    async for notification in client:
        yield notification
        n -= 1
        if not n:
            return


def test_a_send_continues_only_the_newest_open_group_when_an_older_one_is_unread_again(alice):
    """Marked unread again (the history API), an older group is open beside the newest: a send
    continues the newest only, so every notification of one group keeps its first_id."""
    older = comment(alice, "alice")
    Notification.objects.filter(pk=older.pk).mark_read()
    newer = comment(alice, "bob")
    Notification.objects.filter(pk=older.pk).update(read_at=None)
    latest = comment(alice, "carol")
    assert (latest.group_count, latest.group_first) == (2, newer.pk)
    assert [n.pk for n in unread(alice)] == [older.pk, latest.pk]
