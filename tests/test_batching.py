"""Idle polls' look-ups coalesced into one query per trip (notify.batching), on the real database."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

import notify
from notify import db
from notify.streams.inbox import batched_head, batched_unread_count

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trips(monkeypatch):  # type: ignore[no-untyped-def]
    """The trips to the database threads made from now on."""
    made: list[object] = []
    real = db.read

    async def counting(fn, *args):  # type: ignore[no-untyped-def]
        made.append(fn)
        return await real(fn, *args)

    monkeypatch.setattr(db, "read", counting)
    return made


async def test_many_polls_asking_at_once_get_their_own_answers_in_one_trip(make_user, trips):
    users = [await sync_to_async(make_user)() for _ in range(30)]
    for number, user in enumerate(users):
        for _ in range(number % 4):
            await notify.asend(user, "hello")
    await sync_to_async(notify.models.Notification.objects.filter(recipient=users[3]).mark_read)()
    trips.clear()

    heads, unread = await asyncio.gather(
        asyncio.gather(*(batched_head(user.pk) for user in users)),
        asyncio.gather(*(batched_unread_count(user.pk) for user in users)),
    )

    assert [head.notifications for head in heads] == [number % 4 for number in range(30)]
    assert unread == [0 if number == 3 else number % 4 for number in range(30)]
    assert len(trips) == 2  # one per question, not one per poll


async def test_a_user_without_an_inbox_has_head_0_and_nothing_unread(make_user):
    user = await sync_to_async(make_user)()
    assert ((await batched_head(user.pk)).notifications, await batched_unread_count(user.pk)) == (0, 0)


async def test_questions_asked_during_a_trip_go_in_the_next_and_a_cancelled_asker_is_skipped(make_user, trips):
    users = [await sync_to_async(make_user)() for _ in range(3)]
    await notify.asend(users[2], "one")
    trips.clear()
    first = asyncio.ensure_future(batched_head(users[0].pk))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first trip is under way
    cancelled = asyncio.ensure_future(batched_head(users[1].pk))
    later = asyncio.ensure_future(batched_head(users[2].pk))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert ((await first).notifications, (await later).notifications) == (0, 1)
    assert len(trips) == 2


async def test_many_tokens_are_verified_in_one_trip_and_each_gets_its_own_user(make_user, token_for, trips):
    from notify.auth import authenticate_credential, user_ids_for_tokens
    from notify.models import ApiToken

    users = [await sync_to_async(make_user)() for _ in range(5)]
    tokens = [await sync_to_async(token_for)(user) for user in users]
    revoked = await sync_to_async(token_for)(users[0])
    await sync_to_async(lambda: ApiToken.objects.get(key=ApiToken.split(revoked)[0]).revoke())()
    forged = tokens[1][:-4] + "AAAA"  # the right key, a wrong secret
    trips.clear()

    found = await asyncio.gather(*(authenticate_credential(("token", t)) for t in tokens))
    assert found == [user.pk for user in users]
    assert len(trips) == 1
    # Cached now, and the revoked, forged and malformed ones are refused alike.
    assert await sync_to_async(user_ids_for_tokens)([*tokens, revoked, forged, "junk"]) == {
        token: user.pk for token, user in zip(tokens, users, strict=True)
    }
