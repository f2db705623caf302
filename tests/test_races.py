"""The subscribe/check race, made exact, on every path a held poll takes.

A held poll subscribes, waits until Redis confirms, clears its wake-up flag, checks
the database, then waits (docs/delivery.md, "Subscribe, then check, then wait").
Each test here lands one send at one exact point of that sequence, on one path:

- ``session``: the inbox, with a session this worker has not verified yet (verified
  in the same database trip as the check: ``polling.look_all``);
- ``trusted token``: the inbox, with a bearer token this worker verified and
  trusts (the engine's fast path: no verification, the head read with other
  polls' through ``notify.batching``);
- ``trusted session``: the same with a session cookie;
- ``topic``: ``GET /notify/topics/<name>/poll`` (one guarded stream: its
  permission asked in the check's trip);
- ``streams``: ``GET /notify/poll?streams=inbox,<topic>``, the send going to the
  inbox, with a trusted token.

All of them are ``notify.polling.hold``: one engine, so one hook.

and the points:

- ``subscribed``: Redis has confirmed the subscriptions and their flags are
  cleared; the database is not checked yet (the engine's hook,
  ``notify.polling._test_hook``). The check must find it.
- ``during the check``: the moment the check's read of the stream has returned,
  before the poll takes another step (``notify.db.read``, the one door to the
  database, wrapped by the test). It must wake the poll. A poll that clears its
  flag after the check loses it; one that reads the head before subscribing has it
  published unheard and its check blind to it.
- ``checked``: the check is done, the poll is about to wait (the engine's hook).
  It must wake the poll.

At every point the send is committed and published, and, once the poll listens,
heard by its subscription, before the poll moves on: every step is awaited, none
is timed. A poll that loses the send waits out its timeout (TIMEOUT) and answers empty.

In-process: Django's AsyncClient drives the ASGI application in the test's event
loop, with the real database (through notify's own database threads) and the real
Redis (the loop's hub).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import AsyncClient

import notify
from notify import auth, batching, db, polling
from notify.broker import Subscription, get_broker
from notify.conf import conf
from notify.models import ApiToken
from notify.streams import inbox, topic

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["session", "trusted token", "trusted session", "topic", "streams", "announcement"]
POINTS = ["subscribed", "during the check", "checked"]
# The held poll's timeout: what a lost send costs a test. Under the hub's first keepalive
# PING (5 s after it connects), so that a failing test's teardown does not meet it.
TIMEOUT = 4

# What reads a stream (its head or a page) through notify.db.read, as opposed to a
# credential or an unread count. A Batch's trip is a stream read if it is the heads'.
STREAM_READS = {
    polling.look_all,
    inbox.head,
    inbox.page_after,
    inbox.unread_snapshot,
    topic.topic_page_after,
    topic.topic_head,
    topic.topic_snapshot,
}


def reads_a_stream(fn: Callable[..., Any]) -> bool:
    fn = getattr(fn, "func", fn)  # a functools.partial
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, batching.Batch):
        return owner.fetch is inbox.heads
    return fn in STREAM_READS


class Race:
    """Lands ``send`` at ``point`` of the next held poll, once."""

    def __init__(self, point: str, send: Callable[[], Awaitable[Any]], channel: str) -> None:
        self.point = point
        self.send = send
        self.channel = channel
        self.subscriptions: list[Subscription] = []
        self.landed = False
        self.unconfirmed: list[str] = []  # channels the poll went on with before Redis had them
        self.passed: list[str] = []  # the hook points the poll went through

    async def hook(self, point: str, subscriptions: Sequence[Subscription]) -> None:
        self.passed.append(point)
        if point == "subscribed":
            self.subscriptions = list(subscriptions)
            # Confirmed means Redis has them: asked before this hook yields to the loop.
            channels = [s.channel for s in subscriptions]
            counts = dict(get_broker().client.pubsub_numsub(*channels))
            self.unconfirmed = [channel for channel in channels if not counts.get(channel.encode())]
        if point == self.point:
            await self.land()

    def wrap(self, read: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def read_then_land(fn: Callable[..., Any], *args: Any) -> Any:
            result = await read(fn, *args)
            if self.point == "during the check" and reads_a_stream(fn):
                await self.land()
            return result

        return read_then_land

    async def land(self) -> None:
        if self.landed:
            return
        self.landed = True
        await self.send()  # committed, then published (on_commit, outside a transaction: at once)
        # If the poll listens already, let its subscription hear the message before
        # the poll moves on: a flag cleared after this point has lost it for sure.
        listening = [s for s in self.subscriptions if s.channel == self.channel]
        if listening:
            async with asyncio.timeout(5):
                while not any(s.messages for s in listening):
                    await asyncio.sleep(0.001)


async def trust(credential: auth.Credential, user_id: int) -> None:
    """Have this loop's worker verify ``credential`` while it hears revocations: its held polls then trust it."""
    async with get_broker().subscribe(f"{conf.CHANNEL_PREFIX}:test:warm-up") as warm_up:
        assert await warm_up.wait_ready(5)
    async with asyncio.timeout(5):
        while get_broker().auth_epoch() is None:  # the auth channel confirmed
            await asyncio.sleep(0.001)
    assert await auth.authenticate_credential(credential) == user_id
    assert auth.is_trusted(credential, user_id, auth.listening())


async def held_poll(path: str, alice: Any, room: str) -> tuple[AsyncClient, str, dict[str, str], dict[str, str]]:
    """The client, URL, query and headers of alice's poll on ``path``, held up to TIMEOUT seconds."""
    client = AsyncClient()
    headers = {}
    if path in ("session", "trusted session", "topic"):
        await sync_to_async(client.force_login)(alice)
        if path == "trusted session":
            await trust(("session", client.cookies[settings.SESSION_COOKIE_NAME].value), alice.pk)
    else:
        _, raw = await sync_to_async(ApiToken.issue)(alice)
        await trust(("token", raw), alice.pk)
        headers["Authorization"] = f"Bearer {raw}"
    timeout = str(TIMEOUT)
    if path == "topic":
        return client, f"/notify/topics/{room}/poll", {"after": "0", "timeout": timeout}, headers
    if path == "streams":
        return (
            client,
            "/notify/poll",
            {"streams": f"inbox,{room}", "after": f"inbox:0,{room}:0", "timeout": timeout},
            headers,
        )
    return client, "/notify/poll", {"after": "0", "timeout": timeout}, headers


def delivered(path: str, page: dict) -> list[str]:
    """The titles (a topic's: the texts) a poll on ``path`` answered with."""
    if path == "topic":
        return [m["data"]["text"] for m in page["messages"]]
    if path == "streams":
        page = page["streams"]["inbox"]
    return [n["title"] for n in page["notifications"]]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("path", PATHS)
async def test_a_send_at_each_point_of_a_held_poll_is_delivered_at_once(
    path, point, make_user, monkeypatch, close_hubs
):
    alice = await sync_to_async(make_user)()
    room = f"room:race-{alice.pk}"
    client, url, query, headers = await held_poll(path, alice, room)
    if path == "topic":
        send = sync_to_async(lambda: notify.publish(room, {"text": "landed"}, sender=alice))
        channel = conf.channel_for_topic(room)
    elif path == "announcement":  # to everyone, on the channel every inbox poll follows (a trusted token's)
        send = sync_to_async(lambda: notify.announce("landed"))
        channel = conf.announcements_channel
    else:
        send = sync_to_async(lambda: notify.send(alice, "landed"))
        channel = conf.channel_for_user(alice.pk)
    race = Race(point, send, channel)
    trusted: list[bool] = []
    real_is_trusted = auth.is_trusted

    def spy(*args: Any) -> bool:
        trusted.append(real_is_trusted(*args))
        return trusted[-1]

    monkeypatch.setattr(auth, "is_trusted", spy)
    monkeypatch.setattr(polling, "_test_hook", race.hook)
    monkeypatch.setattr(db, "read", race.wrap(db.read))

    started = time.monotonic()
    response = await client.get(url, query, headers=headers)
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.content
    assert race.landed, f"the poll never reached {point!r} (it went through {race.passed})"
    assert race.unconfirmed == [], "the poll checked before Redis had confirmed its subscriptions"
    assert delivered(path, response.json()) == ["landed"], f"lost at {point!r} on the {path} path: {response.json()}"
    assert elapsed < TIMEOUT / 2, f"answered after {elapsed:.1f} s: by its timeout, not by the send"
    # The path really was the one named: trusted or verified.
    assert trusted == [path in ("trusted token", "trusted session", "streams", "announcement")]
