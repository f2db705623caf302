"""A worker verifies a credential once, then trusts it for held polls while it hears
every revocation on its Redis auth channel (notify.auth._Hints): the per-poll
credential look-up was the largest cost of an idle re-poll (docs/benchmarks.md).

Each test counts the token look-ups the worker makes (one at a time or batched),
against real Redis and the real database.
"""

from __future__ import annotations

import asyncio

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import AsyncClient, override_settings
from django.utils import timezone

from notify import auth, batching
from notify.broker import get_broker
from notify.conf import conf

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lookups(monkeypatch):  # type: ignore[no-untyped-def]
    """The token look-ups made from now on (one at a time or batched, all go through here)."""
    made: list[str] = []
    real_many = auth.user_ids_for_tokens

    def counting_many(raws: list[str], *, cached: bool = True):  # type: ignore[no-untyped-def]
        made.extend(raws)
        return real_many(raws, cached=cached)

    monkeypatch.setattr(auth, "user_ids_for_tokens", counting_many)
    return made


async def held_poll(client: AsyncClient, token: str, cursor: str, timeout: float = 0.2) -> int:
    response = await client.get(
        "/notify/poll", {"after": cursor, "timeout": str(timeout)}, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


async def trusted_token(make_user, token_for, lookups, client: AsyncClient) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A token the worker has verified during its current auth epoch, and its cursor."""
    user = await sync_to_async(make_user)()
    token = await sync_to_async(token_for)(user)
    reply = await client.get("/notify/poll", headers={"Authorization": f"Bearer {token}"})
    cursor = reply.json()["cursor"]
    # The first held poll starts the worker's hub (and its auth channel), then verifies.
    for _ in range(50):
        assert await held_poll(client, token, cursor) == 200
        if get_broker().auth_epoch() is not None and auth.is_trusted(("token", token), user.pk, auth.listening()):
            return token, cursor
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never came to trust the token")


async def test_held_polls_of_a_verified_token_need_no_look_up_while_the_auth_channel_is_heard(
    make_user, token_for, lookups, close_hubs
):
    client = AsyncClient()
    token, cursor = await trusted_token(make_user, token_for, lookups, client)
    before = len(lookups)
    for _ in range(5):
        assert await held_poll(client, token, cursor) == 200
    assert len(lookups) == before


async def test_an_auth_message_from_another_process_ends_the_trust(make_user, token_for, lookups, close_hubs):
    client = AsyncClient()
    token, cursor = await trusted_token(make_user, token_for, lookups, client)
    user_id = auth._hints.user_id(("token", token))
    # Published as another worker's revocation would be: only through Redis.
    publisher = redis.Redis.from_url(conf.REDIS_URL)
    try:
        publisher.publish(conf.AUTH_CHANNEL, b"%d" % user_id)
    finally:
        publisher.close()
    for _ in range(50):
        if auth._hints.user_id(("token", token)) is None:
            break
        await asyncio.sleep(0.02)
    before = len(lookups)
    assert await held_poll(client, token, cursor) == 200
    assert len(lookups) == before + 1  # verified again


async def test_a_lost_pubsub_connection_ends_the_trust(make_user, token_for, lookups, close_hubs):
    client = AsyncClient()
    token, cursor = await trusted_token(make_user, token_for, lookups, client)
    hub = get_broker().hub()  # type: ignore[attr-defined]
    epoch = hub.auth_epoch
    # Revocations published while the connection is down would go unheard.
    killer = redis.Redis.from_url(conf.REDIS_URL)
    try:
        own = [
            c
            for c in killer.client_list()
            if c.get("name") == f"{conf.CHANNEL_PREFIX}:hub" and int(c.get("sub", 0)) >= 1
        ]
        for client_info in own:
            killer.client_kill_filter(_id=client_info["id"])
    finally:
        killer.close()
    for _ in range(100):
        if hub.auth_epoch is not epoch:
            break
        await asyncio.sleep(0.05)
    assert hub.auth_epoch is not epoch
    before = len(lookups)
    assert await held_poll(client, token, cursor, timeout=0.5) == 200
    assert len(lookups) == before + 1


async def test_trust_can_be_turned_off(make_user, token_for, lookups, close_hubs):
    client = AsyncClient()
    token, cursor = await trusted_token(make_user, token_for, lookups, client)
    with override_settings(NOTIFY={**settings.NOTIFY, "CREDENTIAL_TRUST_SECONDS": 0}):
        before = len(lookups)
        for _ in range(3):
            assert await held_poll(client, token, cursor) == 200
        assert len(lookups) == before + 3


async def test_a_revoked_token_is_refused_by_the_next_held_poll_though_it_was_trusted(
    make_user, token_for, lookups, close_hubs
):
    from notify.models import ApiToken

    client = AsyncClient()
    token, cursor = await trusted_token(make_user, token_for, lookups, client)
    key = ApiToken.split(token)[0]  # type: ignore[index]
    await sync_to_async(lambda: ApiToken.objects.get(key=key).revoke())()
    assert await held_poll(client, token, cursor) == 401


async def test_a_credential_verified_while_a_change_was_announced_is_not_trusted(
    make_user, token_for, lookups, monkeypatch, close_hubs
):
    client = AsyncClient()
    token, cursor = await trusted_token(make_user, token_for, lookups, client)
    user_id = auth._hints.user_id(("token", token))
    auth._hints.forget(("token", token))
    real = auth.user_ids_for_tokens

    def announced_meanwhile(raws, *, cached=True):  # type: ignore[no-untyped-def]
        found = real(raws, cached=cached)  # read before the change commits...
        auth.credentials_changed(b"%d" % user_id)  # ...whose message is heard before the answer is kept
        return found

    monkeypatch.setattr(auth, "user_ids_for_tokens", announced_meanwhile)
    batching._batches.pop(asyncio.get_running_loop(), None)  # batches keep the look-up they were made with
    reply = await client.get("/notify/poll", headers={"Authorization": f"Bearer {token}"})  # verifies
    assert reply.status_code == 200
    assert auth._hints.user_id(("token", token)) == user_id  # still a hint for the channel...
    assert not auth.is_trusted(("token", token), user_id, auth.listening())  # ...but not trusted


@pytest.fixture
def session_lookups(monkeypatch):  # type: ignore[no-untyped-def]
    """The session verifications made from now on (each one as Django's middleware would)."""
    made: list[str] = []
    real = auth.user_id_for_session

    def counting(session_key: str):  # type: ignore[no-untyped-def]
        made.append(session_key)
        return real(session_key)

    monkeypatch.setattr(auth, "user_id_for_session", counting)
    return made


async def trusted_session(user, client: AsyncClient) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A logged-in session the worker has verified during its current auth epoch, and its cursor."""
    await sync_to_async(client.force_login)(user)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    cursor = (await client.get("/notify/poll")).json()["cursor"]
    for _ in range(50):
        assert (await client.get("/notify/poll", {"after": cursor, "timeout": "0.2"})).status_code == 200
        if get_broker().auth_epoch() is not None and auth.is_trusted(("session", key), user.pk, auth.listening()):
            return key, cursor
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never came to trust the session")


async def test_held_polls_of_a_verified_session_need_no_look_up_while_the_auth_channel_is_heard(
    make_user, session_lookups, close_hubs
):
    client = AsyncClient()
    await trusted_session(await sync_to_async(make_user)(), client)
    before = len(session_lookups)
    for _ in range(5):
        assert (await client.get("/notify/poll", {"after": "0", "timeout": "0.2"})).status_code == 200
    assert len(session_lookups) == before


async def test_a_session_is_trusted_no_longer_than_it_lasts(make_user, close_hubs):
    # Expiry ends a session without a signal: the trust must end with it.
    from django.contrib.sessions.models import Session

    user = await sync_to_async(make_user)()
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    session = client.session
    session.set_expiry(3)
    await sync_to_async(session.save)()
    key, cursor = await trusted_session(user, client)
    expire_date = (await Session.objects.aget(session_key=key)).expire_date
    async with asyncio.timeout(10):
        while timezone.now() <= expire_date:
            await asyncio.sleep(0.1)
        # cached_db: Django itself serves the session from the cache until the cache entry's
        # own expiry, a moment after the row's: wait until Django too says it has ended.
        while await sync_to_async(auth.user_id_for_session)(key) is not None:
            await asyncio.sleep(0.1)
    reply = await client.get("/notify/poll", {"after": cursor, "timeout": "0.2"})
    assert reply.status_code == 401, reply.content


async def held_until_ended(client: AsyncClient, cursor: str, end, monkeypatch) -> int:  # type: ignore[no-untyped-def]
    """Hold a 20 s poll; once it waits, run ``end()``; the poll's status, which must come at once."""
    from notify import polling

    waiting = asyncio.Event()

    async def hook(point, subscriptions):  # type: ignore[no-untyped-def]
        if point == "checked":
            waiting.set()

    monkeypatch.setattr(polling, "_test_hook", hook)
    poll = asyncio.ensure_future(client.get("/notify/poll", {"after": cursor, "timeout": "20"}))
    async with asyncio.timeout(5):
        await waiting.wait()
    await sync_to_async(end)()
    async with asyncio.timeout(5):  # not the poll's 20 s
        return (await poll).status_code


async def test_a_session_deleted_without_a_logout_is_trusted_no_longer_than_the_bound(make_user, close_hubs):
    # flush() outside logout(), rows deleted from the store: nothing is announced (a
    # post_delete receiver on the session model would make clearsessions load every
    # expired row), so the trust must end within CREDENTIAL_TRUST_SECONDS.
    from importlib import import_module

    with override_settings(NOTIFY={**settings.NOTIFY, "CREDENTIAL_TRUST_SECONDS": 1}):
        user = await sync_to_async(make_user)()
        client = AsyncClient()
        key, cursor = await trusted_session(user, client)
        await sync_to_async(import_module(settings.SESSION_ENGINE).SessionStore(key).delete)()
        async with asyncio.timeout(5):  # the bound is 1 s
            while auth.is_trusted(("session", key), user.pk, auth.listening()):
                await asyncio.sleep(0.05)
        reply = await client.get("/notify/poll", {"after": cursor, "timeout": "0.2"})
    assert reply.status_code == 401, reply.content


async def test_a_deleted_user_ends_their_trusted_session_poll_at_once(make_user, monkeypatch, close_hubs):
    user = await sync_to_async(make_user)()
    client = AsyncClient()
    await trusted_session(user, client)
    status = await held_until_ended(client, "0", user.delete, monkeypatch)
    assert status == 401
