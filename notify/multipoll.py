"""Holding one poll on several streams at once: the user's inbox and topics.

The same three steps as the inbox poll (notify.views.hold, docs/delivery.md),
over every stream's channel: subscribe to all of them and wait until Redis has
confirmed, clear the wake-up flags, check every stream in the database, then wait
for a wake-up on *any* channel (or the timeout). A woken stream whose messages
continue its cursor is answered from them; any other goes back to the database.
One held request, one limiter slot, on the worker's one Redis connection.

A topic poll (``GET /notify/topics/<name>/poll``) is this with one stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from notify import db, lifecycle, streams, topics
from notify.auth import (
    Credential,
    NotAuthenticated,
    forget_hint,
    is_trusted,
    listening,
    remember,
    still_authenticated,
    verified_user_id,
)
from notify.broker import Subscription, get_broker
from notify.conf import conf
from notify.pages import AUTH_CHANGED, notification_json, page_from_messages, topic_page_from_messages
from notify.params import INBOX

# For race tests only (tests/test_races.py). When set, a held poll awaits it at two
# points, with its subscriptions: "subscribed" (Redis has confirmed every
# subscription and their wake-up flags are cleared; the database is not yet
# checked) and "checked" (the database was checked; the poll is about to wait).
# A test lands a send at the exact point of a race instead of hoping to hit it.
# Used by notify.views.hold too. None in production: one comparison per point.
_test_hook: Callable[[str, Sequence[Subscription]], Awaitable[None]] | None = None


class StreamError(Exception):
    """One stream refuses the poll (403, 410, 400): the whole poll fails, saying which."""

    def __init__(self, status: int, code: str, detail: str, stream: str, **extra: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.stream = stream
        self.extra = extra


@dataclass
class Result:
    """What one stream answers: the cursor past its items, the items (JSON), the unread count (inbox)."""

    cursor: int
    items: list[bytes] = field(default_factory=list)
    unread: int | None = None


def channel(name: str, user_id: int) -> str:
    return conf.channel_for_user(user_id) if name == INBOX else conf.channel_for_topic(name)


def look(
    user_id: int,
    wanted: Sequence[tuple[str, int | None]],
    limit: int,
    *,
    credential: Credential | None = None,
    check_permission: bool = True,
) -> dict[str, Result] | None:
    """Every wanted stream's page, in one trip to the database threads. Synchronous.

    ``credential``: verify it first (None if it no longer belongs to
    ``user_id``). A stream without a cursor gets its snapshot. Raises StreamError
    for a topic the user may not read (403), a cursor retention has passed (410)
    or one ahead of its stream (400). The inbox's unread count is read only when
    something is there to answer with.
    """
    if credential is not None and verified_user_id(credential) != user_id:
        return None
    results: dict[str, Result] = {}
    for name, after in wanted:
        if name == INBOX:
            results[name] = _look_inbox(user_id, after, limit)
        else:
            if check_permission and not topics.permitted(user_id, name, "read"):
                raise StreamError(403, "forbidden", f"You may not read topic {name!r}.", name)
            results[name] = _look_topic(name, after, limit)
    if INBOX in results and results[INBOX].unread is None and any(r.items for r in results.values()):
        results[INBOX].unread = streams.unread_count(user_id)
    return results


def _look_inbox(user_id: int, after: int | None, limit: int) -> Result:
    if after is None:
        head, notifications, unread = streams.unread_snapshot(user_id, limit)
        return Result(head, [notification_json(n) for n in notifications], unread)
    cursor, notifications = streams.page_after(user_id, after, limit)
    if not notifications and after > streams.head(user_id):
        raise StreamError(
            400,
            "invalid_cursor",
            "The inbox cursor is ahead of this user's newest notification: it was not issued for this user. "
            "Poll without it to get a fresh one.",
            INBOX,
        )
    return Result(cursor, [notification_json(n) for n in notifications])


def _look_topic(name: str, after: int | None, limit: int) -> Result:
    if after is None:
        head, messages = streams.topic_snapshot(name, limit)
        return Result(head, [notification_json(m) for m in messages])
    cursor, messages, last_seq, pruned_seq = streams.topic_page_after(name, after, limit)
    if after < pruned_seq:
        raise StreamError(
            410,
            "cursor_expired",
            f"Topic {name!r} no longer keeps the messages after this cursor (its retention deleted them). "
            "Poll again from 'oldest_cursor', the oldest cursor it still has, or without a cursor for the newest.",
            name,
            oldest_cursor=str(pruned_seq),
        )
    if after > last_seq:
        raise StreamError(
            400,
            "invalid_cursor",
            f"The cursor is ahead of topic {name!r}'s newest message: it was not issued for this topic. "
            "Poll without it to get a fresh one.",
            name,
        )
    return Result(cursor, [notification_json(m) for m in messages])


async def snapshot(user_id: int, wanted: list[tuple[str, int | None]], limit: int) -> dict[str, Result]:
    """Answer at once (a stream without a cursor): the caller has authenticated the request."""
    results = await db.read(_look(user_id, wanted, limit))
    assert results is not None  # no request to verify
    if INBOX in results and results[INBOX].unread is None:
        results[INBOX].unread = await db.read(streams.unread_count, user_id)
    return results


async def hold(
    credential: Credential, user_id: int, wanted: list[tuple[str, int]], limit: int, timeout: float
) -> dict[str, Result]:
    """What follows each stream's cursor, waiting up to ``timeout`` seconds for anything on any of them.

    The user's own channel is always subscribed: it carries the "auth" message
    that ends held polls of a revoked token or a closed session. When the inbox
    is not one of the streams, its notifications there are ignored.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    broker = get_broker()
    user_channel = conf.channel_for_user(user_id)
    async with contextlib.AsyncExitStack() as stack:
        subscriptions: dict[str, Subscription] = {}
        for name, _ in wanted:
            subscriptions[name] = await stack.enter_async_context(broker.subscribe(channel(name, user_id)))
        auth = subscriptions.get(INBOX)
        if auth is None:
            auth = await stack.enter_async_context(broker.subscribe(user_channel))
        every: list[Subscription] = [*subscriptions.values(), *([] if INBOX in subscriptions else [auth])]
        ready_within = min(conf.SUBSCRIBE_TIMEOUT, timeout)
        await asyncio.gather(*(s.wait_ready(ready_within) for s in every))
        for subscription in every:
            subscription.clear()  # before the check, so that a publish during it still counts
        if _test_hook is not None:
            await _test_hook("subscribed", every)
        # The credential is verified now that we listen, unless trusted (see views.hold).
        now = listening()
        trusted = all(s.ready.is_set() for s in every) and is_trusted(credential, user_id, now)
        results = await db.read(_look(user_id, wanted, limit, credential=None if trusted else credential))
        if results is None:
            forget_hint(credential)
            raise NotAuthenticated("The token was revoked or the session ended.")
        if not trusted:
            remember(credential, user_id, now)
        if _test_hook is not None:
            await _test_hook("checked", every)
        while not any(r.items for r in results.values()):
            remaining = deadline - loop.time()
            if remaining <= 0 or lifecycle.draining():
                break
            if not all(s.ready.is_set() for s in every):
                # Redis is not confirming: nothing may wake us, so look again soon.
                remaining = min(remaining, conf.RECHECK_INTERVAL)
            if not await wait_any(every, remaining):
                if all(s.ready.is_set() for s in every):
                    break  # timed out, listening all along: nothing new (see views.hold)
                results = await db.read(_look(user_id, wanted, limit, check_permission=False))
                assert results is not None  # no credential to verify
                continue
            heard = {name: list(s.messages) for name, s in subscriptions.items()}
            auth_messages = list(auth.messages)
            for subscription in every:
                subscription.clear()
            if AUTH_CHANGED in auth_messages and not await still_authenticated(credential, user_id, cached=False):
                raise NotAuthenticated("The token was revoked or the session ended while this poll was held.")
            if not any(heard.values()) and auth is not subscriptions.get(INBOX) and auth_messages:
                continue  # only the user's notifications, which this poll does not follow
            results = await _recheck(user_id, wanted, heard, limit)
    if INBOX in results and results[INBOX].unread is None:
        results[INBOX].unread = await db.read(streams.unread_count, user_id)
    return results


def _look(
    user_id: int,
    wanted: Sequence[tuple[str, int | None]],
    limit: int,
    *,
    credential: Credential | None = None,
    check_permission: bool = True,
) -> Callable[[], dict[str, Result] | None]:
    """``look`` with these arguments, for db.run (which takes positional ones only)."""
    return partial(look, user_id, wanted, limit, credential=credential, check_permission=check_permission)


async def _recheck(
    user_id: int,
    wanted: list[tuple[str, int]],
    heard: dict[str, list[bytes | str]],
    limit: int,
) -> dict[str, Result]:
    """After a wake-up: each stream whose messages continue its cursor is answered from them;
    the others that heard something go to the database. None heard anything (a reconnect,
    shutdown): all go to the database."""
    results = {name: Result(after) for name, after in wanted}
    to_check: list[tuple[str, int]] = []
    anything = any(heard.values())
    for name, after in wanted:
        messages = heard[name]
        if not messages:
            if not anything:
                to_check.append((name, after))
            continue
        if name == INBOX:
            page = page_from_messages(messages, after, limit)
            if page is not None:
                results[name] = Result(page.cursor, page.notifications, page.unread_count)
                continue
        else:
            topic_page = topic_page_from_messages(messages, after, limit)
            if topic_page is not None:
                results[name] = Result(topic_page.cursor, topic_page.messages)
                continue
        to_check.append((name, after))
    if to_check:
        checked = await db.read(_look(user_id, to_check, limit, check_permission=False))
        assert checked is not None
        results.update(checked)
    return results


async def wait_any(subscriptions: list[Subscription], timeout: float) -> bool:
    """Wait until any of the subscriptions is woken, or ``timeout`` seconds pass; True if woken."""
    if len(subscriptions) == 1:
        return await subscriptions[0].wait(timeout)
    waits = [asyncio.ensure_future(s.wait(timeout)) for s in subscriptions]
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.wait(waits)
    return any(w.result() for w in done)
