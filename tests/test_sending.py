"""notify.send / asend, publishing after commit, bulk sends, model signals."""

from __future__ import annotations

import json
import logging
import time

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import override_settings

import notify
from notify.conf import conf
from notify.models import Notification


@pytest.fixture
def listen(redis_client):
    """A real Redis subscriber to this run's user channels; returns a function that collects messages."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(f"{conf.CHANNEL_PREFIX}:user:*")
    pubsub.get_message(timeout=1)  # the psubscribe confirmation

    def collect(wait: float = 0.3, expect: int | None = None) -> list[tuple[str, dict]]:
        messages = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (expect is None or len(messages) < expect):
            message = pubsub.get_message(timeout=0.05)
            if message and message["type"] == "pmessage":
                seq, unread, body = message["data"].split(b" ", 2)  # notify.pages.message
                parsed = {"seq": int(seq), "unread": int(unread), "notification": json.loads(body)}
                messages.append((message["channel"].decode(), parsed))
        return messages

    yield collect
    pubsub.close()


def test_send_accepts_a_user_an_id_an_iterable_and_a_queryset(make_user):
    a, b, c = make_user(), make_user(), make_user()
    assert len(notify.send(a, "user")) == 1
    assert len(notify.send(b.pk, "id")) == 1
    assert len(notify.send([a, c.pk], "iterable")) == 2
    assert len(notify.send(get_user_model().objects.filter(pk__in=[a.pk, b.pk]), "queryset")) == 2
    assert sorted(Notification.objects.filter(recipient=a).values_list("title", flat=True)) == [
        "iterable",
        "queryset",
        "user",
    ]


def test_a_recipient_listed_twice_is_notified_once(make_user):
    alice = make_user()
    assert len(notify.send([alice, alice.pk, alice], "once")) == 1


def test_send_rejects_an_unknown_level_and_non_users(make_user):
    alice = make_user()
    with pytest.raises(ValueError, match="must be one of: info, success, warning, error"):
        notify.send(alice, "x", level="fatal")
    with pytest.raises(TypeError):
        notify.send(Notification.objects.all(), "x")
    with pytest.raises(TypeError):
        notify.send([1.5], "x")
    with pytest.raises(ValueError, match=f"No user with id {alice.pk + 1000}"):
        notify.send([alice, alice.pk + 1000], "x")
    assert not Notification.objects.exists()


def nested(depth: int) -> dict:
    """A dict ``depth`` levels deep ({}: 1)."""
    data: dict = {}
    for _ in range(depth - 1):
        data = {"k": data}
    return data


def test_send_accepts_data_exactly_as_deep_as_the_limit(make_user):
    alice = make_user()
    notify.send(alice, "deep", data=nested(32))
    assert Notification.objects.get(recipient=alice).data == nested(32)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"title": "a\x00b"}, "title must not contain NUL"),
        ({"body": "\x00"}, "body must not contain NUL"),
        ({"url": "/x\x00"}, "url must not contain NUL"),
        ({"data": {"k": "\x00"}}, "data must not contain NUL"),
        ({"title": "t" * 201}, "title is 201 characters long; at most 200 are accepted"),
        ({"title": "lone \ud800"}, "title must be valid Unicode text"),
        ({"data": {"k": "\udfff"}}, "data must be valid Unicode text"),
        ({"data": {"k": float("nan")}}, "data must be JSON without NaN or Infinity"),
        ({"url": "/" * 501}, "at most 500 are accepted"),
        # Past MAX_JSON_DEPTH (32): json.dumps and every answer would recurse into it.
        ({"data": nested(33)}, "data nests more than 32 levels deep"),
        ({"data": nested(960)}, "data nests more than 32 levels deep"),
    ],
)
def test_send_refuses_what_a_database_cannot_store_before_writing_anything(make_user, fields, error):
    # PostgreSQL rejects NUL characters and long values at insert; SQLite would store
    # them. send() refuses them up front on both, inside the caller's transaction too.
    alice = make_user()
    fields = {"title": "ok", **fields}
    with transaction.atomic():
        with pytest.raises(ValueError, match=error):
            notify.send(alice, **fields)
        notify.send(alice, "the transaction is still usable")
    assert list(Notification.objects.values_list("title", flat=True)) == ["the transaction is still usable"]


def test_send_refuses_content_of_the_wrong_type(make_user):
    alice = make_user()
    with pytest.raises(TypeError, match="title must be a string, got int"):
        notify.send(alice, 5)
    with pytest.raises(TypeError, match="data must be a dict or None, got list"):
        notify.send(alice, "x", data=[1])
    with pytest.raises(TypeError, match="data must be JSON-serializable"):
        notify.send(alice, "x", data={"when": object()})
    assert not Notification.objects.exists()


def test_each_users_stream_is_numbered_from_one_in_send_order(make_user):
    alice, bob = make_user(), make_user()
    notify.send(alice, "a1"), notify.send([alice, bob], "both"), notify.send(alice, "a3")
    assert list(Notification.objects.filter(recipient=alice).order_by("seq").values_list("seq", "title")) == [
        (1, "a1"),
        (2, "both"),
        (3, "a3"),
    ]
    assert list(Notification.objects.filter(recipient=bob).values_list("seq", flat=True)) == [1]


def test_published_only_once_the_transaction_commits(make_user, listen):
    alice = make_user()
    with transaction.atomic():
        [sent] = notify.send(alice, "after commit")
        assert listen(wait=0.3) == []  # not before commit
    [(channel, message)] = listen(wait=2, expect=1)
    assert channel == conf.channel_for_user(alice.pk)
    assert message["seq"] == sent.seq
    assert message["notification"]["id"] == sent.pk
    assert message["notification"]["title"] == "after commit"
    assert message["unread"] == 1


def test_a_rolled_back_send_is_neither_stored_nor_published(make_user, listen):
    alice = make_user()
    with pytest.raises(RuntimeError), transaction.atomic():
        notify.send(alice, "never")
        raise RuntimeError("the caller's transaction fails")
    assert listen(wait=0.5) == []
    assert not Notification.objects.exists()
    # Its number was rolled back too: the stream has no gap.
    assert notify.send(alice, "next")[0].seq == 1


def test_saving_a_notification_directly_numbers_and_publishes_it(make_user, listen):
    alice = make_user()
    created = Notification.objects.create(recipient=alice, title="via the ORM")
    assert created.seq == 1
    [(_, message)] = listen(wait=2, expect=1)
    assert message["notification"]["id"] == created.pk


def test_bulk_send_publishes_in_pipelined_batches(make_user, listen, monkeypatch):
    User = get_user_model()
    User.objects.bulk_create([User(username=f"bulk{i}") for i in range(2500)])
    executes = []
    real_execute = redis.client.Pipeline.execute

    def counting_execute(self, *args, **kwargs):
        executes.append(len(self.command_stack))
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting_execute)
    sent = notify.send(User.objects.filter(username__startswith="bulk"), "announcement")

    assert len(sent) == 2500
    messages = listen(wait=10, expect=2500)
    assert len(messages) == 2500
    assert len({channel for channel, _ in messages}) == 2500
    assert executes == [1000, 1000, 500]  # three round trips, not 2500


def test_a_failed_publish_keeps_the_notification_and_does_not_fail_the_sender(make_user, server, token_for, caplog):
    alice = make_user()
    token = token_for(alice)
    cursor = server.poll(token).json()["cursor"]
    # A real refused connection: nothing listens on port 1.
    with (
        override_settings(NOTIFY={**settings.NOTIFY, "REDIS_URL": "redis://127.0.0.1:1/0"}),
        caplog.at_level(logging.ERROR, logger="notify"),
        transaction.atomic(),
    ):
        [sent] = notify.send(alice, "saved despite Redis")
    assert "could not publish" in caplog.text
    assert Notification.objects.filter(pk=sent.pk).exists()
    # The next poll finds it in the database.
    page = server.poll(token, after=cursor, timeout=5).json()
    assert [n["id"] for n in page["notifications"]] == [sent.pk]


@pytest.mark.django_db(transaction=True)
async def test_asend_is_the_async_twin_of_send(make_user, listen):
    alice = await sync_to_async(make_user)()
    [sent] = await notify.asend(alice, "async", level="success")
    assert sent.level == "success"
    messages = await sync_to_async(listen)(wait=2, expect=1)
    assert messages[0][1]["notification"]["title"] == "async"


def test_a_projects_own_model_signal_becomes_a_notification(make_user, listen):
    """The demo's Task: assigning it notifies the assignee (project/demo/receivers.py)."""
    from project.demo.models import Task

    alice, bob = make_user(), make_user()
    task = Task.objects.create(title="Write docs", assignee=alice)
    task.done = True
    task.save()  # same assignee: nothing new
    task.assignee = bob
    task.save()
    with pytest.raises(RuntimeError), transaction.atomic():
        Task.objects.create(title="Rolled back", assignee=alice)
        raise RuntimeError

    assert list(Notification.objects.filter(recipient=alice).values_list("title", flat=True)) == [
        "Task assigned: Write docs"
    ]
    assert list(Notification.objects.filter(recipient=bob).values_list("title", flat=True)) == [
        "Task assigned: Write docs"
    ]
    assert len(listen(wait=2, expect=2)) == 2
