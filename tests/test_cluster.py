"""Redis Cluster (sharded pub/sub over three real masters) and Sentinel failover, behind a real uvicorn.

Needs redis-server 7 and redis-cli: without them the tests skip here and fail in
CI (``CI=true``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import override_settings

import notify
from tests.cluster import OwnCluster, OwnSentinel, cluster_tools_missing
from tests.conftest import poll_channels
from tests.faults import Followers
from tests.server import Server


def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(scope="module")
def cluster() -> Iterator[OwnCluster]:
    missing = cluster_tools_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} CI must run the Redis Cluster tests.", pytrace=False)
        pytest.skip(missing)
    own = OwnCluster().start()
    yield own
    own.stop()


@pytest.fixture(scope="module")
def cluster_server(cluster: OwnCluster, django_db_setup: Any, django_db_blocker: Any) -> Iterator[Server]:
    """A uvicorn whose notify pub/sub is the cluster (its cache stays on the plain Redis)."""
    with django_db_blocker.unblock():
        live = Server(
            env={
                "DJANGO_SETTINGS_MODULE": "tests.pubsub_settings",
                "NOTIFY_PUBSUB_URL": cluster.url,
                "NOTIFY_RECHECK_INTERVAL": "1",
                "NOTIFY_SUBSCRIBE_TIMEOUT": "0.5",
                "NOTIFY_PRESENCE_TTL": "1",
            }
        ).start()
    yield live
    live.stop()
    log = live.log_path.read_text(errors="replace")
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log[-3000:]


@pytest.fixture
def on_cluster(cluster: OwnCluster) -> Iterator[None]:
    """Send from the test process through the cluster too."""
    with override_settings(NOTIFY={**settings.NOTIFY, "REDIS_URL": cluster.url}):
        yield


def hub_connections(node) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    name = f"{settings.NOTIFY['CHANNEL_PREFIX']}:hub"
    return [client for client in node.client().client_list() if client.get("name") == name]


def channel(user: Any) -> str:
    return f"{settings.NOTIFY['CHANNEL_PREFIX']}:user:{user.pk}"


def test_held_polls_are_routed_to_their_shard_over_one_connection_per_shard(
    cluster, cluster_server, on_cluster, make_user, token_for
):
    users = [make_user() for _ in range(30)]
    owners = {channel(user): cluster.node_for(channel(user)) for user in users}
    assert {node.port for node in owners.values()} == {node.port for node in cluster.nodes}  # all 3 shards
    tokens = [token_for(user) for user in users]
    cursors = [cluster_server.poll(token).json()["cursor"] for token in tokens]
    answers: list[list[str]] = []

    def hold(token: str, cursor: str) -> None:
        page = cluster_server.poll(token, after=cursor, timeout=15).json()
        answers.append([n["title"] for n in page["notifications"]])

    threads = [threading.Thread(target=hold, args=pair) for pair in zip(tokens, cursors, strict=True)]
    for thread in threads:
        thread.start()

    # Every inbox poll also follows the announcements' channel, which has a shard of its own.
    announcements = f"{settings.NOTIFY['CHANNEL_PREFIX']}:announcements"
    held_channels = {**owners, announcements: cluster.node_for(announcements)}

    def routed() -> bool:
        # Each channel is SSUBSCRIBEd on the master that owns its slot, and nowhere else.
        return all(
            node.shard_channels() == {ch for ch, owner in held_channels.items() if owner is node}
            for node in cluster.nodes
        )

    assert eventually(routed), {node.port: node.shard_channels() for node in cluster.nodes}
    for node in cluster.nodes:
        hubs = hub_connections(node)
        assert len(hubs) == 1  # one pub/sub connection per shard for the worker, not one per poll
        assert int(hubs[0]["ssub"]) == sum(1 for owner in held_channels.values() if owner is node)

    for node in cluster.nodes:
        node.client().config_resetstat()
    started = time.monotonic()
    notify.send(users, "to everyone")  # SPUBLISH, one pipeline per master
    for thread in threads:
        thread.join(30)
    assert answers == [["to everyone"]] * 30
    for node in cluster.nodes:
        # Each master was sent exactly the SPUBLISHes for its own slots: none refused with MOVED.
        stats = node.client().info("commandstats").get("cmdstat_spublish", {})
        assert stats.get("calls") == sum(1 for owner in owners.values() if owner is node)
        assert stats.get("rejected_calls", 0) == 0
    assert time.monotonic() - started < 5  # woken by the shards, not by the re-check
    # The last waiter of each channel left: after UNSUBSCRIBE_DELAY it is SUNSUBSCRIBEd.
    assert eventually(lambda: all(not node.shard_channels() for node in cluster.nodes))


def test_a_multi_stream_poll_waits_on_channels_of_several_shards(
    cluster, cluster_server, on_cluster, make_user, token_for
):
    user = make_user()
    token = token_for(user)
    inbox_node = cluster.node_for(channel(user))
    prefix = settings.NOTIFY["CHANNEL_PREFIX"]
    room = next(f"room:{i}" for i in range(1000) if cluster.node_for(f"{prefix}:topic:room:{i}") is not inbox_node)
    room_node = cluster.node_for(f"{prefix}:topic:{room}")
    first = cluster_server.poll(token, streams=f"inbox,{room}").json()
    answer: list[Any] = []
    held = threading.Thread(
        target=lambda: answer.append(
            cluster_server.poll(token, streams=f"inbox,{room}", after=first["cursor"], timeout=15)
        )
    )
    held.start()
    # One poll, two channels, two masters.
    assert eventually(
        lambda: channel(user) in inbox_node.shard_channels() and f"{prefix}:topic:{room}" in room_node.shard_channels()
    )
    started = time.monotonic()
    notify.publish(room, {"text": "hello"}, sender=user)
    held.join(30)
    assert [m["data"] for m in answer[0].json()["streams"][room]["messages"]] == [{"text": "hello"}]
    assert time.monotonic() - started < 5  # woken by the room's master, not by the poll's timeout


def test_presence_holds_on_a_cluster(cluster, cluster_server, make_user, token_for):
    """A topic's presence keys share its hash tag ({t:<topic>}): each script runs on one master; the
    deadlines index lives on another slot. Join and leave are published once each."""
    from notify.models import TopicMessage

    alice, bob = make_user(), make_user()
    room = f"room:presence-{os.urandom(3).hex()}"
    headers = {"Authorization": f"Bearer {token_for(alice)}"}
    bobs = {"Authorization": f"Bearer {token_for(bob)}"}
    path = f"/notify/topics/{room}"
    held = threading.Thread(
        target=cluster_server.request,
        args=("GET", f"{path}/poll"),
        kwargs={"params": {"after": "0", "timeout": 1}, "headers": bobs},
    )
    held.start()

    def present() -> list[int]:
        reply = cluster_server.request("GET", f"{path}/presence", headers=headers)
        assert reply.status == 200, reply.body
        return [user["id"] for user in reply.json()["users"]]

    assert eventually(lambda: present() == [bob.pk], 5)
    held.join(10)
    assert eventually(lambda: present() == [], 5)  # PRESENCE_TTL (1 s) after the poll ended

    def events() -> list[str]:
        return list(
            TopicMessage.objects.filter(topic_id=f"presence:{room}")
            .order_by("seq")
            .values_list("data__event", flat=True)
        )

    assert eventually(lambda: events() == ["join", "leave"], 5)


def test_no_notification_lost_across_a_shard_restart(cluster, cluster_server, on_cluster, make_user):
    from django.contrib.auth import get_user_model

    from notify.models import ApiToken, Notification

    User = get_user_model()
    User.objects.bulk_create([User(username=f"shard-restart-{i}") for i in range(60)])
    users = list(User.objects.filter(username__startswith="shard-restart-").order_by("pk"))
    tokens = [ApiToken.issue(user)[1] for user in users]
    channels = {channel(user) for user in users}
    victim = cluster.node_for(channel(users[0]))
    on_victim = {ch for ch in channels if cluster.node_for(ch) is victim}
    assert 0 < len(on_victim) < len(channels)
    cursors = [cluster_server.poll(token).json()["cursor"] for token in tokens]
    followers = Followers(cluster_server.url, tokens, cursors, timeout=5).start()
    try:
        assert eventually(lambda: channels <= set().union(*(node.shard_channels() for node in cluster.nodes)))
        notify.send(users, "before")
        assert followers.wait_for(1, deadline=10)

        victim.kill()  # a third of the channels lose their shard while their polls are held
        notify.send(users, "during")  # commits; the victim's SPUBLISHes fail and are only logged
        # The victim's polls notice at once and find it with their next re-check.
        assert followers.wait_for(2, deadline=15)

        victim.start()  # same port, same nodes.conf: the same master with the same slots
        cluster.wait_ok()
        # The hub reconnects by itself and subscribes the victim's channels again.
        assert eventually(lambda: on_victim <= victim.shard_channels(), timeout=20)
        notify.send(users, "after")
        assert followers.wait_for(3, deadline=10)
    finally:
        followers.stop()

    for user, got in zip(users, followers.received, strict=True):
        expected = list(Notification.objects.filter(recipient=user).order_by("seq").values_list("pk", flat=True))
        assert len(expected) == 3
        assert got == expected  # each exactly once, in order
    assert set(followers.statuses) == {200}
    assert "Redis pub/sub connection lost" in cluster_server.log_path.read_text()


def test_a_migrated_slot_moves_its_channel_to_the_new_master(cluster, cluster_server, on_cluster, make_user, token_for):
    user = make_user()
    token = token_for(user)
    name = channel(user)
    source = cluster.node_for(name)
    target = next(node for node in cluster.nodes if node is not source)
    cursor = cluster_server.poll(token).json()["cursor"]
    answer: list[Any] = []
    held = threading.Thread(target=lambda: answer.append(cluster_server.poll(token, after=cursor, timeout=20)))
    held.start()
    assert eventually(lambda: name in source.shard_channels())

    # Move the channel's slot to another master, as redis-cli --cluster reshard does
    # (a slot without keys has nothing to MIGRATE). The source then drops the
    # slot's shard channels and tells its subscribers with "sunsubscribe".
    slot = source.client().execute_command("CLUSTER", "KEYSLOT", name)
    ids = {node.port: node.client().execute_command("CLUSTER", "MYID").decode() for node in cluster.nodes}
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
    for node in [target, source, *(n for n in cluster.nodes if n not in (source, target))]:
        node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
    assert cluster.node_for(name) is target

    # The held poll's subscription follows the slot: SSUBSCRIBEd on the new master.
    assert eventually(lambda: name in target.shard_channels() and name not in source.shard_channels())
    started = time.monotonic()
    notify.send(user, "after the move")
    held.join(30)
    assert [n["title"] for n in answer[0].json()["notifications"]] == ["after the move"]
    assert time.monotonic() - started < 5  # woken by the new master, not by the poll's timeout


@pytest.fixture
def sentinel() -> Iterator[OwnSentinel]:
    missing = cluster_tools_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} CI must run the Redis Sentinel test.", pytrace=False)
        pytest.skip(missing)
    own = OwnSentinel().start()
    yield own
    own.stop()


def hub_subscriptions(port: int) -> int:
    """Channels this run's hubs hold for polls on the Redis at ``port`` (-1: it does not answer);
    inbox polls hold their users' channels and the announcements'."""
    name = f"{settings.NOTIFY['CHANNEL_PREFIX']}:hub"
    try:
        clients = redis.Redis(port=port).client_list()
    except redis.ConnectionError:
        return -1
    return sum(poll_channels(client) for client in clients if client.get("name") == name)


def test_sentinel_failover_costs_latency_never_a_notification(sentinel, make_user):
    from django.contrib.auth import get_user_model

    from notify.models import ApiToken, Notification

    User = get_user_model()
    User.objects.bulk_create([User(username=f"failover-{i}") for i in range(20)])
    users = list(User.objects.filter(username__startswith="failover-").order_by("pk"))
    tokens = [ApiToken.issue(user)[1] for user in users]
    server = Server(
        env={
            "DJANGO_SETTINGS_MODULE": "tests.pubsub_settings",
            "NOTIFY_PUBSUB_URL": sentinel.url,
            "NOTIFY_RECHECK_INTERVAL": "1",
            "NOTIFY_SUBSCRIBE_TIMEOUT": "0.5",
        }
    ).start()
    followers = None

    try:
        cursors = [server.poll(token).json()["cursor"] for token in tokens]
        followers = Followers(server.url, tokens, cursors).start()
        with override_settings(NOTIFY={**settings.NOTIFY, "REDIS_URL": sentinel.url}):
            old = sentinel.current_master()
            assert eventually(lambda: hub_subscriptions(old) == len(users) + 1)  # the hub found the master
            notify.send(users, "before")
            assert followers.wait_for(1, deadline=10)

            sentinel.kill(old)
            notify.send(users, "during")  # commits; the publish fails (no master yet) and is only logged
            assert followers.wait_for(2, deadline=15)  # found by the re-checks

            new = sentinel.wait_failover(old)
            assert new == sentinel.replica_port
            # The hub asked the sentinel again and subscribed everything on the new master.
            assert eventually(lambda: hub_subscriptions(new) == len(users) + 1, timeout=20)
            started = time.monotonic()
            notify.send(users, "after")  # published to the new master
            assert followers.wait_for(3, deadline=10)
            assert time.monotonic() - started < 3  # woken by pub/sub, well before the followers' 5 s timeout
    finally:
        if followers is not None:
            followers.stop()
        server.stop()

    for user, got in zip(users, followers.received, strict=True):
        expected = list(Notification.objects.filter(recipient=user).order_by("seq").values_list("pk", flat=True))
        assert len(expected) == 3
        assert got == expected  # each exactly once, in order
    assert set(followers.statuses) == {200}
    log = server.log_path.read_text()
    assert "Redis pub/sub connection lost" in log and "Traceback" not in log


def test_sentinel_manual_failover_moves_the_hub_at_once(sentinel, make_user, token_for):
    users = [make_user() for _ in range(5)]
    tokens = [token_for(user) for user in users]
    server = Server(
        env={
            "DJANGO_SETTINGS_MODULE": "tests.pubsub_settings",
            "NOTIFY_PUBSUB_URL": sentinel.url,
            "NOTIFY_RECHECK_INTERVAL": "30",
        }
    ).start()
    followers = None
    try:
        cursors = [server.poll(token).json()["cursor"] for token in tokens]
        # Polls longer than the test: only pub/sub can answer them in time.
        followers = Followers(server.url, tokens, cursors, timeout=40).start()
        old = sentinel.current_master()
        assert eventually(lambda: hub_subscriptions(old) == len(users) + 1)

        # The old master lives on, and stays a master until the sentinel turns it into
        # a replica seconds later: a hub still listening there would hear nothing.
        redis.Redis(port=sentinel.sentinel_port).execute_command("SENTINEL", "FAILOVER", sentinel.service)
        new = sentinel.wait_failover(old)
        switched = time.monotonic()
        assert eventually(lambda: hub_subscriptions(new) == len(users) + 1, timeout=10)
        assert time.monotonic() - switched < 3  # moved on +switch-master, not when the old master dropped it
        with override_settings(NOTIFY={**settings.NOTIFY, "REDIS_URL": sentinel.url}):
            notify.send(users, "after the switch")
        assert followers.wait_for(1, deadline=5)
    finally:
        server.stop()  # first: it answers the held polls at once, and the followers can stop
        if followers is not None:
            followers.stop()
    assert all(len(got) == 1 for got in followers.received)
    assert "the sentinels moved" in server.log_path.read_text()


def check_ids(url: str) -> list[str]:
    from notify.checks import check_settings

    with override_settings(NOTIFY={"REDIS_URL": url}):
        return [problem.id for problem in check_settings()]


def test_cluster_and_sentinel_urls_pass_the_checks():
    assert check_ids("redis+cluster://127.0.0.1:7000") == []
    assert check_ids("rediss+cluster://user:secret@10.0.0.1:7000,10.0.0.2:7000,[::1]:7000/0") == []
    assert check_ids("redis+sentinel://127.0.0.1:26379/mymaster") == []
    assert check_ids("rediss+sentinel://:secret@10.0.0.1,10.0.0.2:26380/mymaster/2?ssl_cert_reqs=none") == []


def test_credentials_tls_and_options_of_a_cluster_url_apply_to_every_node():
    from notify.broker.cluster import node_url, parse_cluster_url

    seeds, pattern = parse_cluster_url("rediss+cluster://u:p@10.0.0.1:7000,[::1]:7001?ssl_cert_reqs=none")
    assert seeds == [("10.0.0.1", 7000), ("::1", 7001)]
    assert node_url(pattern, ("10.0.0.3", 7002)) == "rediss://u:p@10.0.0.3:7002/0?ssl_cert_reqs=none"
    assert node_url(pattern, ("::1", 7001)) == "rediss://u:p@[::1]:7001/0?ssl_cert_reqs=none"


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1",
        "redis+cluster://127.0.0.1:7000,:7001",
        "redis+cluster://127.0.0.1:7000/3",
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/mymaster/x",
        "redis+sentinel://:26379/m",
    ],
)
def test_e012_unusable_cluster_url(url):
    assert check_ids(url) == ["notify.E012"]


def test_plain_redis_urls_keep_the_plain_broker():
    from notify.broker import get_broker
    from notify.broker.cluster import ClusterBroker
    from notify.broker.redis import RedisBroker
    from notify.broker.sentinel import SentinelBroker

    with override_settings(NOTIFY={**settings.NOTIFY, "REDIS_URL": "redis+cluster://127.0.0.1:7000"}):
        assert isinstance(get_broker(), ClusterBroker)
    with override_settings(NOTIFY={**settings.NOTIFY, "REDIS_URL": "redis+sentinel://127.0.0.1:26379/m"}):
        assert isinstance(get_broker(), SentinelBroker)
    assert type(get_broker()) is RedisBroker
