"""Behaviour best seen in-process: settings that change per test, and the memory broker.

The memory broker is the quick start's fallback when no Redis answers; it is
checked here for what it is, never used in place of Redis in delivery tests.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import AsyncClient, override_settings

import notify

pytestmark = pytest.mark.django_db(transaction=True)


async def logged_in_client(make_user):
    user = await sync_to_async(make_user)()
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    return user, client


async def test_timeouts_above_the_maximum_are_clamped(make_user, close_hubs):
    user, client = await logged_in_client(make_user)
    with override_settings(NOTIFY={**settings.NOTIFY, "MAX_TIMEOUT": 1}):
        started = time.monotonic()
        response = await client.get("/notify/poll", {"after": "0", "timeout": "3600"})
    assert response.status_code == 200
    assert response.json()["notifications"] == []
    assert 0.9 < time.monotonic() - started < 5


async def test_memory_broker_wakes_a_held_poll_in_the_same_process(make_user):
    user, client = await logged_in_client(make_user)
    with override_settings(NOTIFY={**settings.NOTIFY, "BROKER": "memory"}):
        poll = asyncio.create_task(client.get("/notify/poll", {"after": "0", "timeout": "20"}))
        await asyncio.sleep(0.5)
        assert not poll.done()
        started = time.monotonic()
        await notify.asend(user, "from memory")  # published from another thread
        response = await poll
    assert [n["title"] for n in response.json()["notifications"]] == ["from memory"]
    assert time.monotonic() - started < 3


async def test_a_poll_for_a_user_whose_redis_is_unreachable_falls_back_to_rechecking(make_user, close_hubs):
    """No Redis confirms the subscription: the poll re-checks the database every RECHECK_INTERVAL."""
    user, client = await logged_in_client(make_user)
    unreachable = {
        **settings.NOTIFY,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "SUBSCRIBE_TIMEOUT": 0.5,
        "RECHECK_INTERVAL": 0.5,
    }
    with override_settings(NOTIFY=unreachable):
        poll = asyncio.create_task(client.get("/notify/poll", {"after": "0", "timeout": "20"}))
        await asyncio.sleep(0.2)
        await notify.asend(user, "found by a re-check")  # its publish fails and is logged
        started = time.monotonic()
        response = await poll
    assert [n["title"] for n in response.json()["notifications"]] == ["found by a re-check"]
    assert time.monotonic() - started < 3


async def test_a_worker_holding_its_maximum_of_polls_answers_503_with_retry_after(make_user, close_hubs):
    _, first = await logged_in_client(make_user)
    _, second = await logged_in_client(make_user)
    with override_settings(NOTIFY={**settings.NOTIFY, "MAX_HELD_POLLS": 1}):
        held = asyncio.create_task(first.get("/notify/poll", {"after": "0", "timeout": "3"}))
        await asyncio.sleep(0.5)
        refused = await second.get("/notify/poll", {"after": "0", "timeout": "3"})
        assert (await held).status_code == 200
        # The slot is free again once the first poll was answered.
        assert (await second.get("/notify/poll", {"after": "0", "timeout": "0"})).status_code == 200
    assert refused.status_code == 503
    assert refused.json()["error"] == "server_busy"
    assert int(refused["Retry-After"]) > 0


async def test_a_hanging_database_query_answers_503_within_its_bound(make_user, monkeypatch, close_hubs):
    from notify.streams import inbox

    user, client = await logged_in_client(make_user)

    def hangs(*args):
        time.sleep(2)
        return {}

    monkeypatch.setattr(inbox, "heads", hangs)  # the held poll's check
    with override_settings(NOTIFY={**settings.NOTIFY, "DB_TIMEOUT": 0.3}):
        started = time.monotonic()
        response = await client.get("/notify/poll", {"after": "0", "timeout": "20"})
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert int(response["Retry-After"]) > 0
    assert time.monotonic() - started < 1.5


async def test_a_poll_refused_its_slot_while_it_waits_is_answered_429_at_once(make_user, monkeypatch, close_hubs):
    """The slot among the user's polls in every worker is asked of Redis beside the poll
    (notify.limits.across_workers). When Redis says "no slot" only once the poll waits (it
    answers late during a broadcast's thousands of re-polls), the refusal wakes the poll:
    429 at once, not when its 20 s are over. Redis's answer is held back here, then given
    right after the poll's check, when the poll goes to wait."""
    from notify import polling, ratelimit

    _, client = await logged_in_client(make_user)
    verdicts: list[asyncio.Future] = []

    def answered_later(user_id: int, limit: int, seconds: float) -> asyncio.Future:
        verdicts.append(asyncio.get_running_loop().create_future())
        return verdicts[-1]

    async def refuse_once_waiting(point: str, subscriptions: object) -> None:
        if point == "checked":  # runs as soon as the poll yields to wait
            asyncio.get_running_loop().call_soon(verdicts[0].set_result, None)

    monkeypatch.setattr(ratelimit, "take_slot_soon", answered_later)
    monkeypatch.setattr(polling, "_test_hook", refuse_once_waiting)
    started = time.monotonic()
    async with asyncio.timeout(10):
        response = await client.get("/notify/poll", {"after": "0", "timeout": "20"})

    assert response.status_code == 429 and response.json()["error"] == "too_many_polls"
    assert time.monotonic() - started < 5
