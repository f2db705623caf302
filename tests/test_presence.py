"""Presence for topics (issue 15, item 3; docs/topics.md#presence), against real processes.

Two uvicorn workers share Redis and the database, as two hosts behind a balancer
would. PRESENCE_TTL is 1 s here (tests/settings_ratelimits.py takes NOTIFY keys as
JSON), so a user drops within about a second and a half of their last poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import AsyncClient, override_settings

from tests import threads
from tests.server import Response, Server, expect_error, two_workers

TTL = 1.0
SWEEP = 0.25  # notify.presence.sweep_interval(): a quarter of the TTL, at least 0.2 s
# The hook opens every topic to posts: a publish to "presence:<topic>" is refused by notify itself.
# A presence read counts as a snapshot: 50 a second, above what the tests' waits ask.
SETTINGS = {
    "PRESENCE": True,
    "PRESENCE_TTL": TTL,
    "MAX_PRESENCE": 3,
    "TOPIC_PERMISSION": "tests.presence_hook.can_use",
    "MAX_SNAPSHOTS_PER_SECOND": 50,
}

_rooms = iter(range(10**6))


def presence_server() -> Server:
    return Server(
        env={"DJANGO_SETTINGS_MODULE": "tests.settings_ratelimits", "NOTIFY_TEST_SETTINGS": json.dumps(SETTINGS)}
    )


@pytest.fixture(scope="module")
def workers(redis_answers: None, django_db_setup: Any, django_db_blocker: Any) -> Iterator[tuple[Server, Server]]:
    servers = contextlib.ExitStack()
    with django_db_blocker.unblock():  # started with the database open to them; the tests ask for it themselves
        both = servers.enter_context(two_workers(presence_server))
    with servers:
        yield both


@pytest.fixture
def room() -> str:
    return f"room:presence-{os.getpid()}-{next(_rooms)}-{os.urandom(3).hex()}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def topic_poll(server: Server, token: str, name: str, **params: Any) -> Response:
    return server.request("GET", f"/notify/topics/{name}/poll", params=params, headers=bearer(token), timeout=70)


def presence(server: Server, token: str, name: str) -> Response:
    return server.request("GET", f"/notify/topics/{name}/presence", headers=bearer(token))


def present(server: Server, token: str, name: str) -> list[str]:
    reply = presence(server, token, name)
    assert reply.status == 200, reply.body
    return [user["username"] for user in reply.json()["users"]]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def events(server: Server, token: str, name: str) -> list[tuple[str, str]]:
    """Every join and leave of topic ``name`` so far, as (event, username), read from its events stream."""
    page = topic_poll(server, token, f"presence:{name}", limit=100).json()
    return [(m["data"]["event"], m["sender"]["username"]) for m in page["messages"]]


class Follower:
    """A user following a topic as the JS client does: a held poll, and the next at once, until stopped."""

    def __init__(self, server: Server, token: str, name: str, timeout: float = 2) -> None:
        self.stopped = False
        cursor = topic_poll(server, token, name).json()["cursor"]
        self.thread = threads.start(self._run, server, token, name, cursor, timeout)

    def _run(self, server: Server, token: str, name: str, cursor: str, timeout: float) -> None:
        while not self.stopped:
            reply = topic_poll(server, token, name, after=cursor, timeout=timeout)
            assert reply.status == 200, reply.body
            cursor = reply.json()["cursor"]

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.system  # two uvicorn workers
def test_two_users_present_across_two_workers_one_leaves_and_events_come_once(workers, make_user, token_for, room):
    first, second = workers
    alice, bob = make_user("alice-" + os.urandom(3).hex()), make_user("bob-" + os.urandom(3).hex())
    alice_token, bob_token = token_for(alice), token_for(bob)
    # Followers who ask for the events follow presence:<room>; nobody else sees them.
    watcher = topic_poll(first, alice_token, f"presence:{room}").json()["cursor"]
    heard = threads.start(topic_poll, second, alice_token, f"presence:{room}", after=watcher, timeout=20)
    following = Follower(first, alice_token, room)
    wait_until(lambda: present(second, bob_token, room) == [alice.username], 5, "alice present")
    assert heard.join(20) is None and heard.result.json()["messages"][0]["data"]["event"] == "join"
    # bob follows on the other worker, with a short poll he does not renew.
    bobs = threads.start(topic_poll, second, bob_token, room, after="0", timeout=2)
    wait_until(lambda: sorted(present(first, alice_token, room)) == sorted([alice.username, bob.username]), 5, "both")
    reply = presence(second, bob_token, room).json()
    assert reply["count"] == 2 and reply["events"] == f"presence:{room}"
    bobs.join(10)
    ended = time.monotonic()
    wait_until(lambda: present(second, alice_token, room) == [alice.username], 10, "bob gone")
    # The documented bound: PRESENCE_TTL after the poll ends, plus a sweep (and a request's slack).
    assert time.monotonic() - ended <= TTL + SWEEP + 1.0
    following.stop()
    wait_until(lambda: len(events(first, alice_token, room)) == 4, 2 + TTL + SWEEP + 1, "alice's leave")
    time.sleep(SWEEP * 2)  # a sweep or two more: nothing is announced twice
    assert present(first, bob_token, room) == []
    assert events(first, alice_token, room) == [
        ("join", alice.username),
        ("join", bob.username),
        ("leave", bob.username),
        ("leave", alice.username),
    ]
    following.thread.join(25)


@pytest.mark.system  # three uvicorn workers, one killed
def test_a_killed_workers_user_drops_within_the_poll_timeout_and_ttl(workers, make_user, token_for, room):
    first, _ = workers
    alice, bob = make_user(), make_user()
    alice_token, bob_token = token_for(alice), token_for(bob)
    following = Follower(first, alice_token, room)  # alice's worker sweeps
    doomed = presence_server().start()
    doomed.check_log = False
    held = threads.start(_poll_ignoring_errors, doomed, bob_token, room, 2)
    wait_until(lambda: bob.username in present(first, alice_token, room), 5, "bob present")
    # The join is decided in Redis, then published through the database a moment later: killed in
    # between, the worker never announces it (its leave still comes). Killed after it, here.
    wait_until(lambda: ("join", bob.username) in events(first, alice_token, room), 5, "bob's join announced")
    assert doomed.process is not None
    os.kill(doomed.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    doomed.process.wait()
    wait_until(lambda: present(first, alice_token, room) == [alice.username], 10, "bob gone after the kill")
    # Held when killed: the poll's timeout (2 s) plus PRESENCE_TTL from its start, plus a sweep.
    assert time.monotonic() - killed <= 2 + TTL + SWEEP + 1.0
    held.join(10)
    following.stop()
    wait_until(lambda: present(first, alice_token, room) == [], 25, "alice gone")
    assert [event for event in events(first, alice_token, room) if event[1] == bob.username] == [
        ("join", bob.username),
        ("leave", bob.username),
    ]
    following.thread.join(25)


def _poll_ignoring_errors(server: Server, token: str, name: str, timeout: float) -> None:
    with contextlib.suppress(OSError):  # its worker was killed
        topic_poll(server, token, name, after="0", timeout=timeout)


@pytest.mark.system
def test_two_tabs_of_one_user_keep_them_present_until_the_last_ends(workers, make_user, token_for, room):
    first, second = workers
    alice, bob = make_user(), make_user()
    alice_token, bob_token = token_for(alice), token_for(bob)
    following = Follower(first, alice_token, room)
    short = threads.start(topic_poll, first, bob_token, room, after="0", timeout=1)
    longer = threads.start(topic_poll, second, bob_token, room, after="0", timeout=3)
    wait_until(lambda: bob.username in present(first, alice_token, room), 5, "bob present")
    short.join(10)
    time.sleep(TTL + SWEEP + 0.5)  # past when the short poll alone would have let bob lapse
    assert bob.username in present(first, alice_token, room)
    longer.join(10)
    wait_until(lambda: bob.username not in present(first, alice_token, room), TTL + SWEEP + 2, "bob gone")
    following.stop()
    following.thread.join(25)
    assert [event for event in events(first, alice_token, room) if event[1] == bob.username] == [
        ("join", bob.username),
        ("leave", bob.username),
    ]


@pytest.mark.system
def test_presence_asks_the_topics_read_permission(workers, make_user, token_for):
    first, _ = workers
    staff, user = make_user(is_staff=True), make_user()
    staff_token, user_token = token_for(staff), token_for(user)
    secret = f"room:staff-{os.urandom(3).hex()}"
    held = threads.start(topic_poll, first, staff_token, secret, after="0", timeout=20)
    wait_until(lambda: present(first, staff_token, secret) == [staff.username], 5, "staff present")
    expect_error(presence(first, user_token, secret), 403, "forbidden")
    expect_error(topic_poll(first, user_token, f"presence:{secret}"), 403, "forbidden")
    # A poll that is refused marks nobody.
    expect_error(topic_poll(first, user_token, secret, after="0", timeout=1), 403, "forbidden")
    assert present(first, staff_token, secret) == [staff.username]
    expect_error(first.request("GET", f"/notify/topics/{secret}/presence"), 401, "not_authenticated")
    # Wake and end the staff poll.
    first.request(
        "POST",
        f"/notify/topics/{secret}/publish",
        headers={**bearer(staff_token), "Content-Type": "application/json"},
        body=b'{"data": {}}',
    )
    held.join(20)


@pytest.mark.system
def test_presence_refuses_bad_input(workers, token, room):
    first, _ = workers
    expect_error(presence(first, token, "no%20spaces"), 400, "invalid_topic")
    expect_error(presence(first, token, "x" * 101), 400, "invalid_topic")
    expect_error(presence(first, token, f"presence:{room}"), 400, "invalid_topic")
    reply = first.request("POST", f"/notify/topics/{room}/presence", headers=bearer(token))
    expect_error(reply, 405, "method_not_allowed")
    published = first.request(
        "POST",
        f"/notify/topics/presence:{room}/publish",
        headers={**bearer(token), "Content-Type": "application/json"},
        body=b'{"data": {"event": "join"}}',
    )
    expect_error(published, 403, "forbidden")


@pytest.mark.system
def test_presence_lists_at_most_max_presence_and_counts_everyone(workers, make_user, token_for, room):
    first, second = workers
    users = [make_user() for _ in range(4)]
    tokens = [token_for(user) for user in users]
    held = [threads.start(topic_poll, first, t, room, after="0", timeout=2) for t in tokens]
    wait_until(lambda: presence(second, tokens[0], room).json()["count"] == 4, 5, "four present")
    reply = presence(second, tokens[0], room).json()
    assert len(reply["users"]) == 3  # MAX_PRESENCE
    threads.join_all(held, 10)


@pytest.mark.system
def test_presence_reads_count_as_snapshots(workers, token, room):
    """Reads in a burst pass 50 in some second: 429 with Retry-After. Four readers at once, so that a
    loaded machine (CI runs two suites side by side) still reads faster than 50 a second; at most 400."""
    first, _ = workers
    replies: list[Response] = []

    def read() -> None:
        while len(replies) < 400 and all(reply.status == 200 for reply in replies):
            replies.append(presence(first, token, room))

    threads.join_all([threads.start(read) for _ in range(4)], 60)
    refused = [reply for reply in replies if reply.status != 200]
    assert refused, f"none of {len(replies)} reads was refused"
    assert {reply.status for reply in refused} == {429} and "retry-after" in refused[0].headers
    expect_error(refused[0], 429, "too_many_snapshots")


@pytest.mark.django_db
async def test_presence_off_answers_404(alice):
    from asgiref.sync import sync_to_async

    from notify.models import ApiToken

    _, token = await sync_to_async(ApiToken.issue)(alice)
    with override_settings(NOTIFY={"BROKER": "memory", "TOPIC_PERMISSION": "project.demo.topics.can_use"}):
        reply = await AsyncClient().get("/notify/topics/room:x/presence", headers=bearer(token))
    assert reply.status_code == 404 and reply.json()["error"] == "presence_off"


@pytest.mark.django_db(transaction=True)
async def test_the_memory_broker_keeps_presence_in_this_process(make_user):
    """One process, no Redis: the same marks, sweep and events."""
    import asyncio

    from asgiref.sync import sync_to_async

    from notify import presence
    from notify.models import TopicMessage

    user = await sync_to_async(make_user)()

    async def until(condition: Callable[[], Any]) -> None:
        async with asyncio.timeout(5):
            while not await condition():
                await asyncio.sleep(0.02)

    async def present_count(n: int) -> bool:
        return (await presence.members("room:m"))[0] == n

    def published() -> list[str]:
        return [m.data["event"] for m in TopicMessage.objects.filter(topic_id="presence:room:m").order_by("seq")]

    async def announced() -> bool:
        return await sync_to_async(published)() == ["join", "leave"]

    with override_settings(NOTIFY={"BROKER": "memory", "PRESENCE": True, "PRESENCE_TTL": 0.2}):
        with presence.holding(user.pk, ["room:m"], 1.0):
            await until(lambda: present_count(1))
            assert await presence.members("room:m") == (1, [user.pk])
        await until(lambda: present_count(0))
        await until(announced)  # the sweeper runs on for PRESENCE_TTL after the loop's last poll
