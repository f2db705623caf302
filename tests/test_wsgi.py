"""Under WSGI (a loop per request) a poll still answers correctly, at a Redis connection per request."""

from __future__ import annotations

import time

from django.test import Client

import notify
from tests import threads
from tests.conftest import hub_clients


def test_poll_under_wsgi_is_answered_when_a_notification_is_sent(make_user, redis_client):
    alice = make_user()
    client = Client()  # Django's WSGI-style handler: async views run in a fresh loop per request
    client.force_login(alice)
    cursor = client.get("/notify/poll").json()["cursor"]
    before = {hub["id"] for hub in hub_clients(redis_client)}  # e.g. a live server's
    threads.start(notify.send, alice, "under wsgi", delay=0.5)

    started = time.monotonic()
    page = client.get("/notify/poll", {"after": cursor, "timeout": 10}).json()

    assert [n["title"] for n in page["notifications"]] == ["under wsgi"]
    assert time.monotonic() - started < 5
    # The request's own hub connection closed with its event loop.
    deadline = time.monotonic() + 5
    while {hub["id"] for hub in hub_clients(redis_client)} != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {hub["id"] for hub in hub_clients(redis_client)} == before
