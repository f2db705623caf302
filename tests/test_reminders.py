"""Reminders (``send(..., deliver_at=...)``): stored at once, delivered at their time by a real
``notify_scheduler`` process, in order with the rest, across restarts of the scheduler."""

from __future__ import annotations

import datetime
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

import notify
from notify.models import Notification
from tests.scheduler import Scheduler

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def scheduler_process(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Scheduler]:
    with django_db_blocker.unblock():
        process = Scheduler().start()
    yield process
    assert process.stop() == 0
    assert "Traceback" not in process.log(), process.log()[-3000:]


@pytest.fixture
def scheduler(scheduler_process: Scheduler) -> Scheduler:
    """The module's scheduler, started again if a test stopped it."""
    if not scheduler_process.running:
        scheduler_process.start()
    return scheduler_process


def in_(seconds: float) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(seconds=seconds)


def ids(answer: Any) -> list[int]:
    return [n["id"] for n in answer.json()["notifications"]]


def test_a_held_poll_receives_a_reminder_at_its_time_and_not_before(server, scheduler, make_user, token_for):
    user = make_user()
    token = token_for(user)
    cursor = server.poll(token).json()["cursor"]
    deliver_at = in_(2)
    [reminder] = notify.send(user, "Stand up", "and stretch", deliver_at=deliver_at)
    assert reminder.seq is None

    answer = server.poll(token, after=cursor, timeout=10)  # held until something arrives
    answered_at = timezone.now()

    assert ids(answer) == [reminder.pk]
    assert answer.json()["notifications"][0]["title"] == "Stand up"
    assert answer.json()["unread_count"] == 1
    assert deliver_at <= answered_at < deliver_at + datetime.timedelta(seconds=1.5)


def test_a_reminder_takes_its_place_in_the_stream_when_due(server, scheduler, make_user, token_for):
    user = make_user()
    token = token_for(user)
    cursor = server.poll(token).json()["cursor"]
    [reminder] = notify.send(user, "reminder", deliver_at=in_(1.5))
    [before] = notify.send(user, "sent after it was scheduled, before it was due")

    first = server.poll(token, after=cursor, timeout=10)
    second = server.poll(token, after=first.json()["cursor"], timeout=10)
    [after] = notify.send(user, "sent after it was due")
    third = server.poll(token, after=second.json()["cursor"], timeout=10)

    assert (ids(first), ids(second), ids(third)) == ([before.pk], [reminder.pk], [after.pk])
    reminder.refresh_from_db()
    before.refresh_from_db()
    after.refresh_from_db()
    assert before.seq < reminder.seq < after.seq
    # The cursor chain from the start lists them in stream order, not creation order.
    assert ids(server.poll(token, after=cursor)) == [before.pk, reminder.pk, after.pk]


def test_a_reminder_is_invisible_to_polls_and_counts_before_it_is_due(server, scheduler, make_user, token_for):
    user = make_user()
    token = token_for(user)
    [reminder] = notify.send(user, "later", deliver_at=in_(60))
    [now] = notify.send(user, "now")

    snapshot = server.poll(token).json()
    assert [n["id"] for n in snapshot["notifications"]] == [now.pk]
    assert snapshot["unread_count"] == 1
    assert Notification.objects.filter(recipient=user).unread().count() == 1
    held = server.poll(token, after=snapshot["cursor"], timeout=1)
    assert held.json()["notifications"] == [] and held.json()["unread_count"] == 1
    assert Notification.objects.get(pk=reminder.pk).is_scheduled


def test_cancel_before_delivery_and_not_after(server, scheduler, make_user, token_for):
    user = make_user()
    token = token_for(user)
    cursor = server.poll(token).json()["cursor"]
    [cancelled] = notify.send(user, "cancelled", deliver_at=in_(1))
    [kept] = notify.send(user, "kept", deliver_at=in_(1.2))

    assert notify.cancel(cancelled) is True
    assert not Notification.objects.filter(pk=cancelled.pk).exists()
    assert notify.cancel(cancelled.pk) is False  # gone already

    delivered = server.poll(token, after=cursor, timeout=10)
    assert ids(delivered) == [kept.pk]
    assert server.poll(token, after=delivered.json()["cursor"], timeout=0.5).json()["notifications"] == []
    # Delivered: too late to cancel or move it, and nothing changes.
    assert notify.cancel(kept) is False
    assert notify.reschedule(kept, in_(60)) is False
    after = Notification.objects.get(pk=kept.pk)
    assert after.seq is not None and after.deliver_at < timezone.now()


def test_reschedule_before_delivery_moves_it(server, scheduler, make_user, token_for):
    user = make_user()
    token = token_for(user)
    cursor = server.poll(token).json()["cursor"]
    [reminder] = notify.send(user, "moved", deliver_at=in_(3600))

    deliver_at = in_(1.5)
    assert notify.reschedule(reminder, deliver_at) is True
    assert reminder.deliver_at == deliver_at and reminder.seq is None

    answer = server.poll(token, after=cursor, timeout=10)
    assert ids(answer) == [reminder.pk]
    assert deliver_at <= timezone.now() < deliver_at + datetime.timedelta(seconds=1.5)
    assert notify.reschedule(reminder.pk, in_(60)) is False


def test_reschedule_to_now_delivers_at_once(server, make_user, token_for):
    user = make_user()
    token = token_for(user)
    cursor = server.poll(token).json()["cursor"]
    [reminder] = notify.send(user, "now, please", deliver_at=in_(3600))

    assert notify.reschedule(reminder, timezone.now()) is True

    assert reminder.seq is not None  # numbered and published by reschedule itself, no scheduler needed
    assert ids(server.poll(token, after=cursor, timeout=5)) == [reminder.pk]


def test_a_reminder_due_while_no_scheduler_runs_is_delivered_when_one_starts(server, scheduler, make_user, token_for):
    user = make_user()
    token = token_for(user)
    assert scheduler.stop() == 0  # SIGTERM: a clean exit
    assert "notify_scheduler: stopped" in scheduler.log()
    [reminder] = notify.send(user, "while you were out", deliver_at=in_(0.2))
    time.sleep(0.5)

    snapshot = server.poll(token).json()  # due, but nobody has delivered it
    assert snapshot["notifications"] == [] and snapshot["unread_count"] == 0
    answers: list[Any] = []
    poller = threading.Thread(target=lambda: answers.append(server.poll(token, after=snapshot["cursor"], timeout=20)))
    poller.start()
    scheduler.start()
    poller.join(20)

    assert ids(answers[0]) == [reminder.pk]


def test_two_schedulers_at_once_deliver_each_reminder_exactly_once(server, scheduler, make_user, redis_client):
    users = [make_user() for _ in range(4)]
    assert scheduler.stop() == 0
    pair = [Scheduler(args=["--batch", "20"]).start() for _ in range(2)]
    try:
        pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(f"{settings.NOTIFY['CHANNEL_PREFIX']}:user:*")
        deliver_at = in_(1.5)
        reminders = [n.pk for i in range(50) for n in notify.send(users, f"reminder {i}", deliver_at=deliver_at)]

        published: Counter[int] = Counter()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(published) < len(reminders):
            message = pubsub.get_message(timeout=0.5)
            if message:
                published[json.loads(message["data"].split(b" ", 2)[2])["id"]] += 1
        while message := pubsub.get_message(timeout=0.5):  # anything published twice comes now
            published[json.loads(message["data"].split(b" ", 2)[2])["id"]] += 1
        pubsub.close()
    finally:
        codes = [process.stop() for process in pair]

    assert codes == [0, 0]
    assert published == Counter(dict.fromkeys(reminders, 1))
    assert sum(process.delivered() for process in pair) == len(reminders)
    for user in users:  # each numbered once: 1..50, no gap, no repeat
        assert list(Notification.objects.filter(recipient=user).values_list("seq", flat=True)) == list(range(1, 51))


def test_the_scheduler_survives_a_database_it_cannot_open(transactional_db, tmp_path):
    broken = Scheduler(env={"DATABASE_URL": f"sqlite:///{tmp_path}/missing/db.sqlite3"}).start()
    try:
        deadline = time.monotonic() + 10
        while broken.log().count("database error") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert broken.running
    finally:
        code = broken.stop()
    assert broken.log().count("database error") >= 2
    assert code == 0
    assert "Traceback" not in broken.log()


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_notify_send_at_schedules_a_reminder(make_user):
    make_user("dora")
    relative = run("notify_send", "dora", "in 90 s", "--at", "+90s")
    absolute = run("notify_send", "dora", "new year", "--at", "2030-01-01T09:00:00+01:00")
    zulu = run("notify_send", "dora", "zulu", "--at", "2030-01-01T08:00:00Z")

    assert "Scheduled notification" in relative and "Scheduled notification" in absolute and "Scheduled" in zulu
    by_title = {n.title: n for n in Notification.objects.all()}
    assert all(n.seq is None for n in by_title.values())
    expected = timezone.now() + datetime.timedelta(seconds=90)
    assert abs((by_title["in 90 s"].deliver_at - expected).total_seconds()) < 5
    assert (
        by_title["new year"].deliver_at
        == by_title["zulu"].deliver_at
        == datetime.datetime(2030, 1, 1, 8, tzinfo=datetime.UTC)
    )


@pytest.mark.parametrize(
    ("at", "error"),
    [
        ("2030-01-01T09:00:00", "has no UTC offset"),
        ("tomorrow", "neither an ISO 8601 time"),
        ("+5x", "neither an ISO 8601 time"),
        ("+99999999999d", "too far in the future"),
    ],
)
def test_notify_send_refuses_a_bad_at(make_user, at, error):
    make_user("erin")
    with pytest.raises(CommandError, match=error):
        run("notify_send", "erin", "x", "--at", at)
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("deliver_at", "error", "message"),
    [
        (datetime.datetime(2030, 1, 1, 9), ValueError, "must be timezone-aware"),
        ("2030-01-01T09:00:00Z", TypeError, "must be a timezone-aware datetime, got str"),
        (datetime.date(2030, 1, 1), TypeError, "got date"),
        (1_900_000_000, TypeError, "got int"),
    ],
)
def test_send_refuses_a_bad_deliver_at(make_user, deliver_at, error, message):
    user = make_user()
    with pytest.raises(error, match=message):
        notify.send(user, "x", deliver_at=deliver_at)
    with pytest.raises(error, match=message):
        notify.reschedule(1, deliver_at)
    assert not Notification.objects.exists()


async def test_asend_schedules_a_reminder_too(make_user):
    from asgiref.sync import sync_to_async

    user = await sync_to_async(make_user)()
    [reminder] = await notify.asend(user, "from async code", deliver_at=in_(60))
    assert reminder.seq is None and await Notification.objects.filter(pk=reminder.pk, seq__isnull=True).aexists()


def test_a_deliver_at_now_or_past_is_an_ordinary_send(server, make_user, token_for):
    user = make_user()
    token = token_for(user)
    cursor = server.poll(token).json()["cursor"]

    [past] = notify.send(user, "past", deliver_at=in_(-60))

    assert past.seq is not None and past.deliver_at is None
    assert ids(server.poll(token, after=cursor, timeout=5)) == [past.pk]


def test_the_admin_lists_which_notifications_are_still_scheduled(make_user):
    from django.test import Client

    user = make_user()
    [reminder] = notify.send(user, "scheduled one", deliver_at=in_(3600))
    notify.send(user, "delivered one")
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))

    scheduled = client.get("/admin/notify/notification/", {"delivery": "scheduled"}).content.decode()
    delivered = client.get("/admin/notify/notification/", {"delivery": "delivered"}).content.decode()

    assert "scheduled one" in scheduled and "scheduled for" in scheduled and "delivered one" not in scheduled
    assert "delivered one" in delivered and "scheduled one" not in delivered
    change = client.get(f"/admin/notify/notification/{reminder.pk}/change/").content.decode()
    assert 'name="deliver_at' not in change  # moved with notify.reschedule, not by editing the row


def test_the_demo_remind_form_needs_csrf_and_a_known_delay(make_user):
    from django.test import Client

    user = make_user()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/inbox/remind/", {"delay": "60"}).status_code == 403

    client = Client()
    client.force_login(user)
    refused = client.post("/inbox/remind/", {"delay": "5"}, follow=True)
    assert "Choose when to be reminded" in refused.content.decode()
    assert not Notification.objects.exists()

    client.post("/inbox/remind/", {"delay": "10", "title": "tea"})
    [reminder] = Notification.objects.all()
    assert reminder.title == "tea" and reminder.seq is None
    assert 5 < (reminder.deliver_at - timezone.now()).total_seconds() <= 10


def test_editing_a_due_undelivered_reminder_leaves_its_numbering_to_the_dispatcher(make_user):
    from notify.scheduling import dispatch_due

    alice = make_user()
    (reminder,) = notify.send(alice, "later", deliver_at=timezone.now() + datetime.timedelta(minutes=1))
    Notification.objects.filter(pk=reminder.pk).update(deliver_at=timezone.now() - datetime.timedelta(seconds=1))
    reminder.refresh_from_db()
    reminder.title = "edited while the scheduler was down"
    reminder.save()  # as the admin would

    reminder.refresh_from_db()
    assert reminder.seq is None
    assert dispatch_due() == 1
    reminder.refresh_from_db()
    assert (reminder.seq, reminder.title) == (1, "edited while the scheduler was down")
