"""Several instances and workers behind a real nginx running deploy/nginx.conf."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import time

import pytest
from asgiref.sync import sync_to_async

import notify
from tests import threads
from tests.conftest import hub_clients, poll_channels
from tests.nginx import Nginx, require_nginx
from tests.server import Server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module", autouse=True)
def nginx_installed() -> None:
    require_nginx()


def get(url: str, path: str, headers: dict[str, str], timeout: float = 40) -> tuple[int, dict]:
    status, body = get_raw(url, path, headers, timeout)
    return status, json.loads(body or b"{}")


def get_raw(url: str, path: str, headers: dict[str, str], timeout: float = 40) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def test_a_notification_sent_through_any_instance_reaches_polls_held_by_every_other(make_user, token_for, redis_client):
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
    from django.test import Client

    users = [make_user() for _ in range(16)]
    tokens = [token_for(user) for user in users]
    instances = [Server(args=["--workers", "2"]).start() for _ in range(2)]
    proxy = Nginx([f"127.0.0.1:{instance.port}" for instance in instances]).start()
    try:
        held: list[tuple[int, dict]] = []
        pollers = [
            threads.start(
                lambda t=t: held.append(
                    get(proxy.url, "/notify/poll?after=0&timeout=20", {"Authorization": f"Bearer {t}"})
                )
            )
            for t in tokens
        ]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            busy = [hub for hub in hub_clients(redis_client) if poll_channels(hub) > 0]
            # Each busy worker holds its polls' users' channels and the announcements'.
            if sum(poll_channels(hub) - 1 for hub in busy) == 16:
                break
            time.sleep(0.1)
        assert len(busy) >= 2  # the polls are spread over several worker processes

        # An announcement posted through the proxy, handled by whichever worker it lands on.
        admin = make_user(is_staff=True, is_superuser=True)
        client = Client()
        client.force_login(admin)
        secret = _get_new_csrf_string()
        cookies = f"sessionid={client.cookies['sessionid'].value}; csrftoken={secret}"
        host, port = proxy.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=20)
        conn.request(
            "POST",
            "/admin/notify/broadcast/add/",
            body="title=Everyone&level=info&_confirm=1",  # to every active user: confirmed
            headers={
                "Cookie": cookies,
                "X-CSRFToken": _mask_cipher_secret(secret),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert conn.getresponse().status == 302
        conn.close()
        for poller in pollers:
            poller.join(20)
    finally:
        proxy.stop()
        for instance in instances:
            instance.stop()
    assert len(held) == 16
    assert all(status == 200 and [n["title"] for n in page["notifications"]] == ["Everyone"] for status, page in held)


async def test_the_python_client_keeps_delivering_behind_a_proxy_that_cuts_polls(server, make_user, token_for):
    from notify.client import NotifyClient

    user = await sync_to_async(make_user)()
    token = await sync_to_async(token_for)(user)
    proxy = await sync_to_async(lambda: Nginx([f"127.0.0.1:{server.port}"], poll_read_timeout="2s").start())()
    received: list[dict] = []
    try:
        async with NotifyClient(proxy.url, token, timeout=25, backoff_base=0.2) as client:

            async def follow() -> None:
                async for notification in client:
                    received.append(notification)

            follower = asyncio.ensure_future(follow())
            await asyncio.sleep(4)  # the proxy cuts the first 25 s poll at 2 s
            sent = []
            for i in range(4):  # further apart than the cut
                sent += await notify.asend(user, f"n{i}")
                await asyncio.sleep(2.5)
            deadline = asyncio.get_running_loop().time() + 15
            while len(received) < len(sent) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            adapted_timeout = client.timeout
            client.stop()
            await asyncio.wait({follower})
    finally:
        await sync_to_async(proxy.stop)()
    assert [n["id"] for n in received] == [n.pk for n in sent]  # all, once, in order
    assert adapted_timeout < 2  # it learned to end its polls before the proxy cuts them


def test_45_second_topic_and_multi_stream_polls_behind_the_shipped_config_are_answered_not_cut(
    server, make_user, token_for
):
    """Issue 13, case 7: every poll location gets the long-poll timeouts, not `location /`'s 30 s.

    Both polls are held side by side, so the test takes one poll's 45 s (and each would be
    cut at 30 s with a 504 if its location fell back to `location /`)."""
    token = token_for(make_user())
    room = f"room:nginx-{os.getpid()}-{os.urandom(3).hex()}"
    headers = {"Authorization": f"Bearer {token}"}
    proxy = Nginx([f"127.0.0.1:{server.port}"]).start()
    try:
        answers: dict[str, tuple[int, bytes]] = {}
        started = time.monotonic()
        polls = [
            threads.start(
                lambda: answers.__setitem__(
                    "topic", get_raw(proxy.url, f"/notify/topics/{room}/poll?after=0&timeout=45", headers, timeout=60)
                )
            ),
            threads.start(
                lambda: answers.__setitem__(
                    "streams",
                    get_raw(
                        proxy.url,
                        f"/notify/poll?streams=inbox,{room}&after=inbox:0,{room}:0&timeout=45",
                        headers,
                        timeout=60,
                    ),
                )
            ),
        ]
        for poll in polls:
            poll.join(60)
        took = time.monotonic() - started
    finally:
        proxy.stop()
    assert answers["topic"][0] == 200, answers["topic"]  # not nginx's 504 at 30 s
    assert json.loads(answers["topic"][1]) == {"cursor": "0", "messages": []}
    assert answers["streams"][0] == 200, answers["streams"]
    assert json.loads(answers["streams"][1])["cursor"] == f"inbox:0,{room}:0"
    assert 45 <= took < 52  # held to its timeout, and answered by the app
