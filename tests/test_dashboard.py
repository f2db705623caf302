"""The admin's live dashboard (docs/admin.md#live-dashboard), over real HTTP against a real uvicorn:
who may open it and read its topic, and the figures each worker publishes there while it is open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission

import notify
from notify.dashboard import TOPIC
from tests import threads
from tests.server import Server

pytestmark = pytest.mark.system

DASHBOARD = "/admin/notify/broadcast/dashboard/"
INTERVAL = 0.3


@pytest.fixture(scope="module")
def dashboard_server(redis_answers: None, django_db_setup: Any, django_db_blocker: Any) -> Iterator[Server]:
    """A uvicorn whose workers publish their figures every INTERVAL s while the dashboard is open."""
    with django_db_blocker.unblock():
        live = Server(env={"NOTIFY_DASHBOARD_INTERVAL": str(INTERVAL)}).start()
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def unwatched(redis_client: Any) -> Iterator[None]:
    """After each test nobody watches: the session's other servers stop publishing figures
    within an interval (they share this run's Redis prefix and database)."""
    yield
    redis_client.delete(f"{settings.NOTIFY['CHANNEL_PREFIX']}:dashboard:watched")


def topic_poll(server: Server, token: str, **params: Any) -> Any:
    return server.request(
        "GET", f"/notify/topics/{TOPIC}/poll", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_the_dashboard_is_for_staff_with_the_permission(dashboard_server, make_user, session_cookie):
    server = dashboard_server
    anonymous = server.request("GET", DASHBOARD)
    assert anonymous.status == 302 and "/admin/login/" in anonymous.headers["location"], anonymous.headers
    for user in (make_user(), make_user(is_staff=True)):  # signed in, but not staff; staff without the permission
        reply = server.request("GET", DASHBOARD, headers={"Cookie": session_cookie(user)})
        assert reply.status == 403, (reply.status, reply.body[:300])
    staff = make_user(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_broadcast"))
    reply = server.request("GET", DASHBOARD, headers={"Cookie": session_cookie(staff)})
    assert reply.status == 200, reply.body[:500]
    page = reply.body.decode()
    assert "Live dashboard" in page and f'data-notify-topics="{TOPIC}"' in page
    assert reply.headers["cache-control"] == "no-store"


def test_the_dashboard_topic_is_refused_to_everyone_else(dashboard_server, make_user, token_for):
    """Whatever the project's TOPIC_PERMISSION says (the demo's opens no such name anyway, so
    this is notify's own rule): non-staff may not read it, nobody may post to it."""
    server = dashboard_server
    for user in (make_user(), make_user(is_staff=True)):
        reply = topic_poll(server, token_for(user))
        assert reply.status == 403, (reply.status, reply.body[:300])
        assert reply.json()["error"] == "forbidden"
    admin = make_user(is_staff=True, is_superuser=True)
    reply = server.request(
        "POST",
        f"/notify/topics/{TOPIC}/publish",
        headers={"Authorization": f"Bearer {token_for(admin)}", "Content-Type": "application/json"},
        body=b'{"data": {"held": 999}}',
    )
    assert reply.status == 403, (reply.status, reply.body[:300])


def test_figures_arrive_while_a_poll_is_held_and_count_it(dashboard_server, make_user, token_for):
    server = dashboard_server
    alice = make_user()
    alice_token = token_for(alice)
    cursor = server.poll(alice_token).json()["cursor"]
    held = threads.start(server.poll, alice_token, after=cursor, timeout=20)
    server.wait_for_held_polls(1, alice.pk)

    admin_token = token_for(make_user(is_staff=True, is_superuser=True))
    first = topic_poll(server, admin_token)
    assert first.status == 200, first.body[:300]
    cursor = first.json()["cursor"]
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    # The staff poll of the topic is held too: alice's and it make 2 on the one worker.
    while not any(m["data"]["held"] >= 2 for m in seen):
        assert time.monotonic() < deadline, f"no figures counting alice's held poll within 10 s: {seen[-3:]}"
        page = topic_poll(server, admin_token, after=cursor, timeout=5).json()
        seen += page["messages"]
        cursor = page["cursor"]
    figures = next(m["data"] for m in seen if m["data"]["held"] >= 2)
    assert figures["held"] == 2, figures
    assert figures["redis"] == "connected" and figures["draining"] is False, figures
    assert figures["metrics"] is False and figures["p99_ms"] is None, figures  # metrics off: no publish stamps
    assert figures["worker"].endswith(f":{server.process.pid}"), figures
    assert figures["answered_per_s"] >= 0 and isinstance(figures["broadcasts"], list), figures

    notify.send(alice, "wake up")  # alice's poll answers now, not in 20 s
    held.join(10)
    assert held.result.status == 200


def test_the_dashboard_topic_keeps_only_its_last_messages_whatever_the_retention_says():
    """Every worker writes a row per interval while it is open: the topic must not grow for ever,
    even where TOPIC_RETENTION keeps every topic whole."""
    from django.test import override_settings

    from notify.dashboard import KEEP
    from notify.topics import retention_for

    with override_settings(NOTIFY={**settings.NOTIFY, "TOPIC_RETENTION": {}}):
        assert retention_for(TOPIC) == (KEEP, None)
        assert retention_for("room:1") == (None, None)
