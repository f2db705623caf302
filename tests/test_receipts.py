"""What pages received (notify.receipts): a held inbox poll's cursor raises its user's mark in
Redis, which the email digest leaves out. Real uvicorn, real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import notify
from notify import receipts
from notify.models import ApiToken
from tests.browser.conftest import wait_until
from tests.server import Server, expect_error


@pytest.fixture(scope="module")
def digests_server(redis_answers: None, django_db_setup: Any, django_db_blocker: Any) -> Iterator[Server]:
    """A uvicorn of its own with email digests on: only then are receipts noted."""
    with django_db_blocker.unblock():
        live = Server(env={"NOTIFY_EMAIL_DIGESTS": "1"}).start()
    yield live
    live.stop()


def noted(server: Server, token: str, cursor: int) -> None:
    """A held poll with this cursor (answered at once: the notifications above it are there, or after 0.1 s)."""
    reply = server.poll(token, after=str(cursor), timeout=0.1)
    assert reply.status == 200, reply.body[:300]


def test_a_held_poll_raises_its_users_mark_and_never_lowers_it(digests_server, make_user, token_for, settings):
    settings.NOTIFY = {**settings.NOTIFY, "EMAIL_DIGESTS": True}
    alice, bob = make_user(), make_user()
    alice_token, bob_token = token_for(alice), token_for(bob)
    notify.send([alice, bob], "one")
    notify.send([alice, bob], "two")
    notify.send([alice, bob], "three")
    assert receipts.received([alice.pk, bob.pk]) == {}

    noted(digests_server, alice_token, 2)
    wait_until(lambda: receipts.received([alice.pk]) == {alice.pk: 2})
    noted(digests_server, alice_token, 1)  # an older tab: the mark stays
    noted(digests_server, alice_token, 3)
    wait_until(lambda: receipts.received([alice.pk]) == {alice.pk: 3})
    noted(digests_server, bob_token, 1)  # after alice's older cursor, in the same event loop's queue
    wait_until(lambda: receipts.received([bob.pk]) == {bob.pk: 1})
    assert receipts.received([alice.pk, bob.pk]) == {alice.pk: 3, bob.pk: 1}


def test_a_clients_idle_re_polls_with_the_same_cursor_write_nothing_to_redis(digests_server, make_user, token_for):
    """Each worker remembers the marks it wrote: the re-polls of an idle page (the same cursor,
    every poll timeout) cost Redis nothing. Seen in the mark's time to live, which every write
    (a raise, or the script's refresh) would set back to KEEP_SECONDS."""
    alice, witness = make_user(), make_user()
    token = token_for(alice)
    notify.send([alice, witness], "one")
    noted(digests_server, token, 1)
    wait_until(lambda: receipts.received([alice.pk]) == {alice.pk: 1})
    client = notify.ratelimit.client()
    left = client.pttl(receipts.key(alice.pk))
    for _ in range(3):
        noted(digests_server, token, 1)  # 0.1 s each: the time to live runs down meanwhile
    noted(digests_server, token_for(witness), 1)  # queued after alice's re-polls, in the same event loop
    wait_until(lambda: receipts.received([witness.pk]) == {witness.pk: 1})
    assert client.pttl(receipts.key(alice.pk)) < left - 200


def test_a_refused_poll_notes_nothing(digests_server, make_user, token_for):
    mallory_target, witness = make_user(), make_user()
    token = token_for(mallory_target)
    notify.send([mallory_target, witness], "one")
    ApiToken.objects.get(user=mallory_target).revoke()
    # The cursor is in the query: a revoked token must not mark the user's notifications received.
    expect_error(digests_server.poll(token, after="1", timeout=0.1), 401, "not_authenticated")
    noted(digests_server, token_for(witness), 1)
    wait_until(lambda: receipts.received([witness.pk]) == {witness.pk: 1})
    assert receipts.received([mallory_target.pk]) == {}


def test_without_email_digests_nothing_is_noted(server, make_user, token_for):
    quiet, witness = make_user(), make_user()
    notify.send([quiet, witness], "one")
    noted(server, token_for(quiet), 1)  # the session's server: digests off
    assert receipts.received([quiet.pk]) == {}


def test_two_workers_never_lower_each_others_mark(make_user, token_for, settings):
    from tests.server import two_workers

    alice, witness = make_user(), make_user()
    token = token_for(alice)
    for title in ("one", "two", "three"):
        notify.send([alice, witness], title)
    with two_workers(lambda: Server(env={"NOTIFY_EMAIL_DIGESTS": "1"})) as (first, second):
        noted(first, token, 3)
        wait_until(lambda: receipts.received([alice.pk]) == {alice.pk: 3})
        noted(second, token, 2)  # an older tab on another worker, which never wrote alice's mark
        noted(second, token_for(witness), 1)  # queued after it, in the same event loop
        wait_until(lambda: receipts.received([witness.pk]) == {witness.pk: 1})
        assert receipts.received([alice.pk]) == {alice.pk: 3}
