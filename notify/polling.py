"""The poll engine: one hold loop for every poll, over any set of streams.

The inbox poll is the one-stream case of the multi-stream poll; a topic poll is
another. Every held poll takes the same steps (docs/delivery.md):

1. **subscribe** to each stream's channel, and to the user's own channel, which
   carries the "auth" message that ends polls of a revoked token or a closed
   session;
2. **confirm**: wait until Redis has answered every SUBSCRIBE, then clear the
   wake-up flags, so that anything published from now on wakes the poll;
3. **verify** the credential, unless this worker verified it recently and has
   heard every announced change since (notify.auth: trusted);
4. **check** each stream in the database (a trusted inbox poll: its head, read
   with other polls' in one query; anything else: one trip for the credential,
   the permissions and the pages);
5. **wait** for a wake-up on any channel, or the timeout;
6. **answer**: a woken stream whose messages continue its cursor is answered from
   them (after its permission is asked again, for a guarded stream); any other
   goes back to the database, which is the record of truth.

A notification committed before step 2 is found by step 4; one committed after it
wakes step 5. Views only parse and encode (notify.views); streams know their
queries (notify.streams); this module knows the order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from notify import auth, dashboard, db, lifecycle, metrics, presence, receipts
from notify.auth import Credential, NotAuthenticated
from notify.broker import Flag, Subscription, get_broker
from notify.conf import conf
from notify.cursor import Cursor, InboxCursor
from notify.limits import SlotVerdict, count_snapshot, poll_limiter
from notify.pages import AUTH_CHANGED
from notify.streams import Result, Stream, named

# For race tests only (tests/test_races.py). When set, a held poll awaits it at two
# points, with its subscriptions: "subscribed" (Redis has confirmed every
# subscription and their wake-up flags are cleared; the database is not yet
# checked) and "checked" (the database was checked; the poll is about to wait).
# A test lands a send at the exact point of a race instead of hoping to hit it.
# None in production: one comparison per point.
_test_hook: Callable[[str, Sequence[Subscription]], Awaitable[None]] | None = None

# Each stream a held poll follows, and its cursor (the stream's kind: notify.cursor).
Followed = list[tuple[Stream, Cursor]]


async def poll(
    credential: Credential, wanted: Sequence[tuple[str, Cursor | None]], limit: int, timeout: float
) -> list[tuple[Stream, Result]]:
    """Each wanted stream (by name, with its cursor or None) and its answer.

    At once if any stream has no cursor (its snapshot); otherwise held up to
    ``timeout`` seconds for anything new on any of them. Raises NotAuthenticated,
    StreamError, LimitExceeded (TooManyPolls) and DatabaseError for the caller to answer.
    """
    if any(after is None for _, after in wanted):
        user_id = await auth.authenticate_credential(credential)
        await count_snapshot(user_id, len(wanted))
        return await snapshot(user_id, [(named(name, user_id), after) for name, after in wanted], limit)
    # Held: start from the credential's hint; hold() verifies it once subscribed.
    user_id = await auth.identify(credential)
    followed: Followed = [(named(name, user_id), after) for name, after in wanted if after is not None]
    holding = partial(hold, credential, user_id, followed, limit, timeout)  # started only if within the limits
    results = await poll_limiter.hold(user_id, conf.MAX_POLLS_PER_USER, conf.MAX_HELD_POLLS, timeout, holding)
    return list(zip([stream for stream, _ in followed], results, strict=True))


async def snapshot(
    user_id: int, wanted: Sequence[tuple[Stream, Cursor | None]], limit: int
) -> list[tuple[Stream, Result]]:
    """Answer at once (some stream has no cursor); the credential is verified already.

    A stream without a cursor gets its snapshot, one with a cursor its page. An
    unguarded stream's snapshot is read with other polls' where the stream can
    (the inbox: its head and unread count); the rest in one trip.
    """
    results: dict[int, Result] = {}
    for index, (stream, after) in enumerate(wanted):
        if after is None and not stream.guarded:
            found = await stream.batched_snapshot(limit)
            if found is not None:
                results[index] = found
    rest = [(index, stream, after) for index, (stream, after) in enumerate(wanted) if index not in results]
    if rest:
        looked = await db.read(look_all, user_id, [(stream, after) for _, stream, after in rest], limit)
        results.update(zip([index for index, _, _ in rest], looked, strict=True))
    answered = [(stream, results[index]) for index, (stream, _) in enumerate(wanted)]
    for stream, result in answered:
        await stream.finish(result)
    metrics.poll_answered("snapshot")
    return answered


async def hold(
    credential: Credential,
    user_id: int,
    followed: Followed,
    limit: int,
    timeout: float,
    verdict: SlotVerdict | None = None,
) -> list[Result]:
    """What follows each stream's cursor, waiting up to ``timeout`` seconds for anything on any of them.

    ``verdict``: whether the poll has its slot among the user's in every worker, which
    arrives while it runs (notify.limits): checked after the check and every wake-up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    broker = get_broker()
    user_channel = conf.channel_for_user(user_id)
    async with contextlib.AsyncExitStack() as stack:
        # 1. subscribe: each channel once (the inbox's are the user's own and the announcements').
        # One flag wakes the poll from any of them: one waiter, however many channels.
        channels = dict.fromkeys([*(c for stream, _ in followed for c in stream.listens_to()), user_channel])
        woken = Flag()
        subscriptions = {
            channel: await stack.enter_async_context(broker.subscribe(channel, woken)) for channel in channels
        }
        every = list(subscriptions.values())
        if verdict is not None:
            verdict.wake_on_refusal(woken)
        # 2. confirm, then clear: a publish from now on, even during the check, wakes the poll.
        ready_by = loop.time() + min(conf.SUBSCRIBE_TIMEOUT, timeout)
        for subscription in every:  # confirmed together: the hub subscribes them at once
            await subscription.wait_ready(ready_by - loop.time())
        for subscription in every:
            subscription.clear()
        if _test_hook is not None:
            await _test_hook("subscribed", every)
        # 3. verify, unless trusted: now that we listen, a change announced before
        # this was published unheard, so the database must be asked.
        now = auth.listening()
        trusted = all(s.ready.is_set() for s in every) and auth.is_trusted(credential, user_id, now)
        if not trusted and not await auth.confirm(credential, user_id, now):
            raise NotAuthenticated("The token was revoked or the session ended.")
        for _, after in followed:
            if isinstance(after, InboxCursor):  # the verified user's page holds all up to it: no email for that
                receipts.note(user_id, after.notifications)
        # 4. check.
        results = await first_look(user_id, followed, limit)
        # Present on the topics it follows (first_look asked the permission) while held: notify.presence.
        stack.enter_context(presence.holding(user_id, [s.name for s, _ in followed if s.marks_presence], timeout))
        if _test_hook is not None:
            await _test_hook("checked", every)
        # 5. wait, 6. answer.
        stack.enter_context(metrics.holding())
        heard: dict[str, list[bytes | str]] = {}
        waited = False
        while not any(result.items for result in results):
            if verdict is not None:
                verdict.check()  # 429 past the user's polls in every worker, before waiting
            waited = True
            remaining = deadline - loop.time()
            if remaining <= 0 or lifecycle.draining():
                break
            if not all(s.ready.is_set() for s in every):
                # Redis is not confirming: nothing may wake us, so look again soon.
                remaining = min(remaining, conf.RECHECK_INTERVAL)
            woke = await woken.wait(remaining)
            if verdict is not None:
                verdict.check()  # woken by a refusal of its slot (or it came meanwhile)
            if not woke:
                if all(s.ready.is_set() for s in every):
                    # Timed out, listening all along: nothing was published since the
                    # check, so there is nothing new to look for.
                    break
                results = await db.read(look_all, user_id, followed, limit)
                continue
            heard = {channel: list(s.messages) for channel, s in subscriptions.items()}
            for subscription in every:
                subscription.clear()
            if AUTH_CHANGED in heard[user_channel] and not await auth.still_authenticated(
                credential, user_id, cached=False
            ):
                raise NotAuthenticated("The token was revoked or the session ended while this poll was held.")
            if not any(heard.values()) and lifecycle.draining():
                break  # woken to shut down: answer empty, the client polls another worker
            results = await answer_wake_up(user_id, followed, heard, limit)
    news = any(result.items for result in results)
    metrics.held_poll_answered(news, waited, lifecycle.draining(), heard.values())
    dashboard.held_poll_answered(news, waited, heard.values(), followed)
    for (stream, _), result in zip(followed, results, strict=True):
        await stream.finish(result)
    return results


async def first_look(user_id: int, followed: Followed, limit: int) -> list[Result]:
    """The check before waiting.

    Unguarded streams (the inbox): the heads, read with other polls' in one query,
    and a page only for a stream that has news. Anything else: one trip, with the
    permissions.
    """
    if not any(stream.guarded for stream, _ in followed):
        results: list[Result] = []
        behind: list[int] = []
        for stream, after in followed:
            head = await stream.batched_head()
            if head is None:
                break
            if stream.ahead_of(after, head):
                raise stream.ahead()
            if stream.behind(after, head):
                behind.append(len(results))
            results.append(Result(after))
        else:
            if behind:
                looked = await db.read(look_all, user_id, [followed[i] for i in behind], limit)
                for index, result in zip(behind, looked, strict=True):
                    results[index] = result
            return results
    return await db.read(look_all, user_id, followed, limit)


def look_all(user_id: int, wanted: Sequence[tuple[Stream, Cursor | None]], limit: int) -> list[Result]:
    """Every wanted stream's page (snapshot, for one without a cursor), in one trip. Synchronous.

    A guarded stream the user may not read raises its StreamError (403).
    """
    for stream, _ in wanted:
        if stream.guarded and not stream.permitted(user_id):
            raise stream.forbidden()
    return [stream.snapshot(limit) if after is None else stream.look(after, limit) for stream, after in wanted]


def permitted_all(user_id: int, streams: Sequence[Stream]) -> Stream | None:
    """The first of ``streams`` the user may no longer read, or None. Synchronous."""
    return next((stream for stream in streams if not stream.permitted(user_id)), None)


async def answer_wake_up(
    user_id: int, followed: Followed, heard: dict[str, list[bytes | str]], limit: int
) -> list[Result]:
    """After a wake-up: each stream whose messages continue its cursor is answered from them;
    the others that heard something go to the database. Nothing heard at all (a reconnect):
    every stream goes to the database. A guarded stream about to answer with news is asked
    its permission again (it may have ended while the poll was held)."""
    results = [Result(after) for _, after in followed]
    anything = any(heard.values())
    to_look: list[int] = []
    from_messages: list[Stream] = []
    for index, (stream, after) in enumerate(followed):
        mine = {channel: heard[channel] for channel in stream.listens_to()}
        if not any(mine.values()):
            if not anything:
                to_look.append(index)
            continue
        found = stream.from_messages(mine, after, limit)
        if found is None:
            to_look.append(index)
        else:
            results[index] = found
            if stream.guarded:
                from_messages.append(stream)
    if to_look:
        looked = await db.read(look_all, user_id, [followed[i] for i in to_look], limit)
        for index, result in zip(to_look, looked, strict=True):
            results[index] = result
    if from_messages:
        refused = await db.read(partial(permitted_all, user_id, from_messages))
        if refused is not None:
            raise refused.forbidden()
    return results
