"""Faults of real processes: Redis stopped and restarted under held polls."""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
from collections import Counter
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

import notify
from notify.conf import conf
from notify.models import Notification
from tests.faults import Followers, OwnRedis, bounded
from tests.scheduler import Scheduler
from tests.server import Server


@pytest.fixture
def own_redis():
    own = OwnRedis().start()
    yield own
    own.stop()


# Fault tests' servers re-check every RECHECK seconds while Redis is not confirming,
# and hold polls far longer: a delivery that waits for a poll's end is seen as late.
RECHECK = 2.0
HELD = 30.0
FAULT_ENV = {"NOTIFY_RECHECK_INTERVAL": str(RECHECK), "NOTIFY_SUBSCRIBE_TIMEOUT": "0.5"}


def many_users(prefix: str, count: int) -> tuple[list[Any], list[str]]:
    from django.contrib.auth import get_user_model

    from notify.models import ApiToken

    User = get_user_model()
    User.objects.bulk_create([User(username=f"{prefix}-{i}") for i in range(count)])
    users = list(User.objects.filter(username__startswith=f"{prefix}-").order_by("pk"))
    return users, [ApiToken.issue(user)[1] for user in users]


def delivered_in_order_exactly_once(users: list[Any], followers: Followers, per_user: int) -> None:
    for user, got in zip(users, followers.received, strict=True):
        expected = list(Notification.objects.filter(recipient=user).order_by("seq").values_list("pk", flat=True))
        assert len(expected) == per_user
        assert got == expected  # each exactly once, in order


def test_redis_outage_costs_latency_never_a_notification(make_user, own_redis):
    """500 followers hold 30 s polls; Redis is killed: what is sent meanwhile (to half of them) arrives
    by the re-check within RECHECK_INTERVAL, long before the polls' end; Redis comes back: every held
    poll's channel is subscribed again on it (those of polls held through the whole outage too), and
    the next send is delivered by pub/sub at once."""
    users, tokens = many_users("outage", 500)
    busy, quiet = range(250), range(250, 500)  # sent to during the outage, or not: held all along
    channels = [conf.channel_for_user(user.pk) for user in users]
    server = Server(env={"REDIS_URL": own_redis.url, **FAULT_ENV}).start()
    followers = None
    try:
        cursors = [server.poll(token).json()["cursor"] for token in tokens]
        followers = Followers(server.url, tokens, cursors, timeout=HELD).start()
        server.wait_for_held_polls(len(users), timeout=30)  # each checked the database, listening
        with override_settings(NOTIFY={**settings.NOTIFY, "REDIS_URL": own_redis.url}):
            notify.send(users, "before")
            assert followers.wait_for(1, deadline=10)
            server.wait_for_held_polls(len(users), timeout=20)

            own_redis.stop()
            # The hub noticed, woke every poll, and each went back to waiting, unconfirmed.
            server.wait_for(lambda state: state["connected"] is False, what="the hub lost Redis")
            server.wait_for_held_polls(len(users), listening=False, timeout=20)
            sent = time.monotonic()
            notify.send(users[: len(busy)], "during")  # commits; the failed publish is only logged
            # Nothing can wake them: each finds it with its next re-check, every RECHECK s.
            assert followers.wait_for(2, deadline=RECHECK + 8, among=busy)
            outage = followers.latencies(sent)[: len(busy)]
            assert max(outage) < RECHECK + 3, f"slowest {max(outage):.1f} s: waited for the poll's end?"
            assert server.state()["connected"] is False  # found by re-checks, not thanks to a reconnect
            assert all(len(followers.received[i]) == 1 for i in quiet)

            own_redis.start()  # same port: the hub reconnects by itself
            restarted = own_redis.client()
            server.wait_for(
                lambda state: state["connected"] and set(channels) <= set(state["subscribed"]),
                timeout=20,
                what="the hub subscribed every held poll's channel again",
            )
            # ... on the restarted Redis itself, each exactly once (one hub, one connection):
            assert [count for _, count in restarted.pubsub_numsub(*channels)] == [1] * len(channels)
            assert len([c for c in restarted.client_list() if c.get("name", "").endswith(":hub")]) == 1
            server.wait_for_held_polls(len(users), timeout=20)  # woken, re-checked, listening again
            sent = time.monotonic()
            notify.send(users, "after")
            assert followers.wait_for(3, deadline=10, among=busy)
            assert followers.wait_for(2, deadline=10, among=quiet)
            # Listening polls never re-check, and their end is 20 s away: only pub/sub answers them
            # now. (Re-checks every RECHECK s, each on its own phase, would not all fall this soon.)
            after = followers.latencies(sent)
            assert max(after) < 0.75 * RECHECK, f"slowest {max(after):.2f} s"
    finally:
        if followers is not None:
            followers.stop()
        server.stop()

    print(
        f"Redis down: delivered by re-check in {min(outage):.2f}-{max(outage):.2f} s (RECHECK {RECHECK} s); "
        f"after the restart by pub/sub in {min(after):.2f}-{max(after):.2f} s"
    )
    for index, (user, got) in enumerate(zip(users, followers.received, strict=True)):
        expected = list(Notification.objects.filter(recipient=user).order_by("seq").values_list("pk", flat=True))
        assert len(expected) == (3 if index in busy else 2)
        assert got == expected  # each exactly once, in order
    assert set(followers.statuses) == {200}  # no 5xx, no refused poll, for 500 followers
    log = server.log_path.read_text()
    assert "Redis pub/sub connection lost" in log
    assert "Traceback" not in log


# The hub PINGs every 5 s and gives up after 10 s without an answer (notify.broker.redis).
KEEPALIVE = 15.0
# What a poll may take past its timeout (docs/reliability.md: "at most DB_TIMEOUT after its timeout").
GRACE = 5.0


def answered_in_time(answer: Any, cursor: str) -> None:
    """200 with nothing new and the same cursor, or 503 with Retry-After: an answer either way."""
    if answer.status == 503:
        assert answer.json()["error"] == "unavailable" and answer.headers["retry-after"] == "5"
    else:
        assert answer.status == 200
        assert answer.json()["notifications"] == [] and answer.json()["cursor"] == cursor


def test_a_frozen_redis_costs_latency_never_a_notification(make_user, own_redis):
    """Redis hangs (SIGSTOP: connections are accepted, nothing is answered) rather than refuses:
    a send still commits and returns within its publish timeouts, polls keep answering within
    their timeout, the hub's keep-alive notices and held 30 s polls find what was sent by
    re-checking; once Redis goes on (SIGCONT) the hub is back, and nothing was lost or twice."""
    users, tokens = many_users("frozen", 21)
    (_, *users), (probe_token, *tokens) = users, tokens  # the first asks short polls while Redis hangs
    channels = [conf.channel_for_user(user.pk) for user in users]
    server = Server(env={"REDIS_URL": own_redis.url, **FAULT_ENV}).start()
    followers = None
    probes: list[tuple[float, Any]] = []

    def short_poll() -> None:
        answer, took = bounded(lambda: server.poll(probe_token, after=probe_cursor, timeout=2), 2 + GRACE + 5)
        probes.append((took, answer))

    try:
        probe_cursor = server.poll(probe_token).json()["cursor"]
        cursors = [server.poll(token).json()["cursor"] for token in tokens]
        followers = Followers(server.url, tokens, cursors, timeout=HELD).start()
        server.wait_for_held_polls(len(users))
        with override_settings(NOTIFY={**settings.NOTIFY, "REDIS_URL": own_redis.url}):
            notify.send(users, "before")
            assert followers.wait_for(1, deadline=10)
            server.wait_for_held_polls(len(users))

            own_redis.freeze()
            try:
                frozen = time.monotonic()
                sent, took = bounded(lambda: notify.send(users, "during"), seconds=10)
                assert Notification.objects.filter(pk__in=[n.pk for n in sent], seq__isnull=False).count() == len(users)
                short_poll()  # the hub still believes in its connection; the token cache hangs
                # The hub's PINGs go unanswered: it drops the connection and every held poll re-checks.
                assert followers.wait_for(2, deadline=KEEPALIVE + RECHECK + 5 - (time.monotonic() - frozen))
                found = time.monotonic() - frozen
                assert server.state()["connected"] is False
                short_poll()  # the hub is reconnecting to a Redis that does not answer
                assert own_redis.process.poll() is None  # still frozen, not gone
            finally:
                own_redis.thaw()
            server.wait_for(
                lambda state: state["connected"] and set(channels) <= set(state["subscribed"]),
                timeout=20,
                what="the hub back on the thawed Redis, every held poll's channel subscribed",
            )
            server.wait_for_held_polls(len(users), timeout=20)
            notify.send(users, "after")
            assert followers.wait_for(3, deadline=RECHECK / 2)  # by pub/sub again
    finally:
        if followers is not None:
            followers.stop()
        own_redis.thaw()
        server.stop()

    print(
        f"frozen Redis: send returned in {took:.2f} s; the held polls found it {found:.1f} s after the freeze; "
        f"2 s polls answered in {', '.join(f'{t:.2f} s ({a.status})' for t, a in probes)}; "
        f"followers' answers {Counter(followers.statuses)}"
    )
    assert took < 2 * 2 + 1.5  # the publish's 2 s socket timeout, and its one retry
    for took_, answer in probes:
        assert took_ <= 2 + GRACE
        answered_in_time(answer, probe_cursor)
    delivered_in_order_exactly_once(users, followers, per_user=3)
    # A poll's token-cache calls wait out their 1 s socket timeouts in the database threads: when
    # many re-poll at once, some exceed DB_TIMEOUT and answer 503 with Retry-After (never a 500).
    assert set(followers.statuses) <= {200, 503}
    log = server.log_path.read_text()
    assert "no answer from Redis" in log  # the keep-alive, not a refused connection, noticed
    assert "Traceback" not in log


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_and_drop_polls(port: int, requests: list[bytes]) -> None:
    import asyncio

    writers = []
    for request in requests:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        writers.append(writer)
    await asyncio.sleep(0.3)  # held by now
    for writer in writers:
        writer.transport.abort()  # gone, without a word


def test_thousands_of_clients_going_away_leave_nothing_behind(server, make_user, token_for, redis_client):
    import asyncio

    from tests.conftest import hub_clients
    from tests.test_hub import eventually, subscribed_channels

    users = [make_user() for _ in range(10)]
    tokens = [token_for(user) for user in users]
    cursors = [server.poll(token).json()["cursor"] for token in tokens]
    requests = [
        f"GET /notify/poll?after={cursor}&timeout=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
        for token, cursor in zip(tokens, cursors, strict=True)
        for _ in range(10)  # each user's maximum
    ]
    asyncio.run(open_and_drop_polls(server.port, requests))  # warm up
    assert eventually(lambda: subscribed_channels(redis_client) == 0, timeout=10)
    baseline = rss_kb(server.process.pid)

    for _ in range(20):  # 2,000 polls held and abandoned
        asyncio.run(open_and_drop_polls(server.port, requests))
    assert eventually(lambda: subscribed_channels(redis_client) == 0, timeout=10)
    assert len(hub_clients(redis_client)) == 1

    # Every per-user slot was given back: each user may hold ten polls again.
    asyncio.run(open_and_drop_polls(server.port, requests[:10]))
    assert eventually(
        lambda: (
            {server.poll(token, after=cursor, timeout=0).status for token, cursor in zip(tokens, cursors, strict=True)}
            == {200}
        )
    )
    grown = rss_kb(server.process.pid) - baseline
    print(f"server RSS after 2,000 abandoned polls: {grown:+d} KB from {baseline} KB")
    assert grown < 20_000  # no per-poll leak: 2,000 leaked polls would be far more


def postgres_tools_missing() -> str | None:
    import os
    import shutil

    from tests.faults import OwnPostgres

    if os.geteuid() != 0 or not shutil.which("su"):
        return "needs root to run initdb as the postgres user"
    if not os.path.exists(f"{OwnPostgres.BIN}/initdb"):
        return f"no PostgreSQL server binaries at {OwnPostgres.BIN}"
    return None


def test_postgresql_restarted_under_held_polls_the_worker_survives(transactional_db):
    import os
    import subprocess
    import sys

    from django.db import connection

    from tests.faults import OwnPostgres
    from tests.server import ROOT

    if connection.vendor != "postgresql":
        pytest.skip("runs in the PostgreSQL run of the suite")
    missing = postgres_tools_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)

    database = OwnPostgres().start()
    server = None
    followers = None
    try:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DATABASE_URL": database.url}

        def manage(*args: str) -> str:
            return subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout

        manage("migrate", "--verbosity", "0")
        manage("demo_seed")
        token = manage("notify_token", "alice").strip().splitlines()[-1]
        server = Server(env={"DATABASE_URL": database.url}).start()
        cursor = server.poll(token).json()["cursor"]
        followers = Followers(server.url, [token] * 5, [cursor] * 5, timeout=3).start()
        time.sleep(1)

        database.restart()  # every pooled connection of the server is now broken
        manage("notify_send", "alice", "after the restart")

        assert followers.wait_for(1, deadline=20)
        assert server.process.poll() is None  # the worker survived
        assert server.poll(token).status == 200
    finally:
        if followers is not None:
            followers.stop()
        if server is not None:
            server.stop()
        database.destroy()
    assert all(len(got) == 1 for got in followers.received)  # once, not twice
    assert set(followers.statuses) <= {200, 503}


class Batches:
    """The barrier of a scheduler started with NOTIFY_TEST_BATCH_BARRIER (notify/scheduling.py)."""

    def __init__(self, folder: Any) -> None:
        self.folder = folder
        self.env = {"NOTIFY_TEST_BATCH_BARRIER": str(folder)}

    def reached(self, batch: int, point: str) -> bool:
        return (self.folder / f"{batch}-{point}.reached").exists()

    def wait(self, batch: int, point: str, scheduler: Scheduler, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.reached(batch, point):
            assert scheduler.running, scheduler.log()[-3000:]
            assert time.monotonic() < deadline, f"batch {batch} never reached {point!r}: {scheduler.log()[-3000:]}"
            time.sleep(0.01)

    def release(self, batch: int, point: str) -> None:
        (self.folder / f"{batch}-{point}.go").touch()

    def through(self, batch: int, scheduler: Scheduler) -> None:
        """Let batch ``batch`` run to its commit."""
        for point in ("numbered", "committing"):
            self.wait(batch, point, scheduler)
            self.release(batch, point)


class DueReminders:
    """Reminders for a few users, all due at once; a client following each user's cursor; and
    every message published on their channels, counted by notification id."""

    ROUNDS, BATCH = 15, 20  # 60 reminders for 4 users: three batches

    def __init__(self, server: Server, make_user: Any, token_for: Any, redis_client: Any) -> None:
        from django.utils import timezone

        self.users = [make_user() for _ in range(4)]
        tokens = [token_for(user) for user in self.users]
        self.pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(*(conf.channel_for_user(user.pk) for user in self.users))
        self.published: Counter[int] = Counter()
        cursors = [server.poll(token).json()["cursor"] for token in tokens]
        self.followers = Followers(server.url, tokens, cursors, timeout=10).start()
        server.wait_for(
            lambda state: all(state["users"].get(str(u.pk), {}).get("listening") == 1 for u in self.users),
            what="a held poll listening for each user",
        )
        later = timezone.now() + datetime.timedelta(hours=1)
        self.reminders = [
            n.pk for i in range(self.ROUNDS) for n in notify.send(self.users, f"reminder {i}", deliver_at=later)
        ]
        Notification.objects.filter(pk__in=self.reminders).update(deliver_at=timezone.now())  # all due now

    def undelivered(self) -> int:
        return Notification.objects.filter(pk__in=self.reminders, seq__isnull=True).count()

    def listen(self, expected: set[int], timeout: float = 20) -> None:
        """Count what is published until every id in ``expected`` was, and then a moment longer
        (anything published twice comes now)."""
        deadline = time.monotonic() + timeout
        while not expected <= set(self.published) and time.monotonic() < deadline:
            self._count(self.pubsub.get_message(timeout=0.5))
        while message := self.pubsub.get_message(timeout=0.5):
            self._count(message)

    def _count(self, message: Any) -> None:
        if message:
            self.published[json.loads(message["data"].split(b" ", 2)[2])["id"]] += 1

    def close(self) -> None:
        self.followers.stop()
        self.pubsub.close()

    def assert_each_delivered_once(self, per_user: int) -> None:
        everything = set(Notification.objects.filter(recipient__in=self.users).values_list("pk", flat=True))
        assert self.undelivered() == 0
        assert self.published == Counter(dict.fromkeys(everything, 1))  # each published once, none twice
        for user, got in zip(self.users, self.followers.received, strict=True):
            stream = Notification.objects.filter(recipient=user).order_by("seq")
            assert list(stream.values_list("seq", flat=True)) == list(range(1, per_user + 1))  # no gap, no repeat
            assert got == list(stream.values_list("pk", flat=True))  # each once, in stream order


@pytest.mark.parametrize("point", ["numbered", "committing"])
def test_a_scheduler_killed_mid_batch_loses_no_reminder_and_delivers_none_twice(
    server, make_user, token_for, redis_client, tmp_path, point
):
    """SIGKILL while batch 2 of 3 is numbered but not saved, or saved but not committed: batch 1
    stays delivered, batch 2 is rolled back whole; a send made before the next scheduler starts
    takes the next number; the next scheduler delivers batches 2 and 3: each reminder once."""
    batches = Batches(tmp_path)
    due = DueReminders(server, make_user, token_for, redis_client)
    killed = Scheduler(args=["--batch", str(due.BATCH), "--interval", "0.1"], env=batches.env)
    after = None
    try:
        killed.start()
        batches.through(1, killed)
        if point == "committing":
            batches.wait(2, "numbered", killed)
            batches.release(2, "numbered")
        batches.wait(2, point, killed)
        assert killed.process is not None
        os.kill(killed.process.pid, signal.SIGKILL)
        assert killed.process.wait(10) == -signal.SIGKILL
        assert due.undelivered() == 2 * due.BATCH  # batch 2 rolled back with its transaction
        assert due.followers.wait_for(due.BATCH // 4, deadline=10)  # batch 1: 5 each

        between = [n.pk for n in notify.send(due.users, "sent while no scheduler runs")]
        after = Scheduler(args=["--batch", str(due.BATCH), "--interval", "0.1"]).start()
        due.listen(set(due.reminders) | set(between))
        assert due.followers.wait_for(due.ROUNDS + 1, deadline=10)
        assert after.stop() == 0
    finally:
        killed.stop()
        if after is not None:
            after.stop()
        due.close()

    assert killed.delivered() == due.BATCH and after.delivered() == 2 * due.BATCH
    due.assert_each_delivered_once(per_user=due.ROUNDS + 1)
    for process in (killed, after):
        assert "Traceback" not in process.log()


def test_a_scheduler_stopped_mid_batch_commits_the_batch_in_hand_and_exits(
    server, make_user, token_for, redis_client, tmp_path
):
    """SIGTERM while batch 2 of 3 is in hand: it is finished and committed, the scheduler exits 0
    without starting batch 3, and the next scheduler delivers the rest: each reminder once."""
    batches = Batches(tmp_path)
    due = DueReminders(server, make_user, token_for, redis_client)
    stopped = Scheduler(args=["--batch", str(due.BATCH), "--interval", "0.1"], env=batches.env)
    after = None
    try:
        stopped.start()
        batches.through(1, stopped)
        batches.wait(2, "numbered", stopped)
        stopped.ask_to_stop()  # handled while it has the batch in hand
        batches.release(2, "numbered")
        batches.wait(2, "committing", stopped)
        batches.release(2, "committing")
        assert stopped.process is not None and stopped.process.wait(10) == 0
        assert not batches.reached(3, "numbered")
        assert due.undelivered() == due.BATCH  # batches 1 and 2 committed

        after = Scheduler(args=["--batch", str(due.BATCH), "--interval", "0.1"]).start()
        due.listen(set(due.reminders))
        assert due.followers.wait_for(due.ROUNDS, deadline=10)
        assert after.stop() == 0
    finally:
        stopped.stop()
        if after is not None:
            after.stop()
        due.close()

    assert stopped.delivered() == 2 * due.BATCH and after.delivered() == due.BATCH
    assert "notify_scheduler: stopped" in stopped.log()
    due.assert_each_delivered_once(per_user=due.ROUNDS)
    for process in (stopped, after):
        assert "Traceback" not in process.log()
