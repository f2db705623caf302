"""Issue 15, item 1: Prometheus metrics that move as polls are held, answered and refused,
summed over two workers (docs/metrics.md).

Two uvicorn processes share Redis, the database and one PROMETHEUS_MULTIPROC_DIR, as two
workers of one server would; each scrape goes to one of them and must show both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import notify
from tests import threads
from tests.server import Server, expect_error

TOKEN = "scraper-token-0123456789abcdef"
METRICS = {"METRICS": True, "METRICS_TOKEN": TOKEN, "MAX_POLLS_PER_USER": 2}


def metrics_server(directory: Path) -> Server:
    return Server(
        env={
            "DJANGO_SETTINGS_MODULE": "tests.settings_ratelimits",
            "NOTIFY_TEST_SETTINGS": json.dumps(METRICS),
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
        }
    )


@pytest.fixture(scope="module")
def workers(
    redis_answers: None, django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    directory = tmp_path_factory.mktemp("prometheus")
    with django_db_blocker.unblock():
        first = metrics_server(directory).start()
        try:
            second = metrics_server(directory).start()
        except BaseException:
            first.stop()
            raise
    yield first, second
    first.stop()
    second.stop()


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /notify/metrics, by name and labels."""
    reply = server.request("GET", "/notify/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 200, reply.body[:500]
    assert reply.headers["content-type"].startswith("text/plain"), reply.headers
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.body.decode())
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def answered(samples: dict[Any, float], outcome: str) -> float:
    return value(samples, "notify_polls_answered_total", outcome=outcome)


@pytest.mark.system  # two uvicorn workers
def test_metrics_add_up_held_polls_deliveries_and_refusals_over_two_workers(workers, make_user, token_for):
    """One poll held on each worker: a scrape of either shows 2 held. A third poll is refused
    (429): counted once, as a refusal and as an answer. A send wakes both: 2 woken answers, 2
    delivery latencies, and nothing held any more. A topic message published over HTTP and
    the hubs' state show too. Each figure is the sum of both workers' (a worker alone has 1)."""
    first, second = workers
    alice = make_user()
    token = token_for(alice)
    before = scrape(first)

    cursor = first.poll(token).json()["cursor"]
    replies: dict[int, Any] = {}

    def hold(server: Server) -> None:
        replies[server.port] = server.poll(token, after=cursor, timeout=20)

    held = [threads.start(hold, server) for server in (first, second)]
    first.wait_for_held_polls(1, alice.pk)
    second.wait_for_held_polls(1, alice.pk)
    during = scrape(first)
    assert value(during, "notify_polls_held") == 2
    assert value(during, "notify_redis_connected") == 2  # each worker's hub
    assert value(during, "notify_redis_channels") >= 2  # alice's channel on each, and the auth channels'
    assert value(during, "notify_redis_confirm_seconds_count") > value(before, "notify_redis_confirm_seconds_count")
    assert answered(during, "snapshot") == answered(before, "snapshot") + 1

    expect_error(second.poll(token, after=cursor, timeout=2), 429, "too_many_polls")
    refused = scrape(second)
    assert value(refused, "notify_refusals_total", code="too_many_polls") == (
        value(before, "notify_refusals_total", code="too_many_polls") + 1
    )
    assert answered(refused, "429") == answered(before, "429") + 1

    # The sender (this process, metrics on) stamps its message with the publish time, and
    # counts it in its own registry (no PROMETHEUS_MULTIPROC_DIR here).
    sent_before = REGISTRY.get_sample_value("notify_notifications_published_total") or 0
    with override_settings(NOTIFY={**settings.NOTIFY, "METRICS": True}):
        notify.send(alice, "wakes both")
    assert REGISTRY.get_sample_value("notify_notifications_published_total") == sent_before + 1
    threads.join_all(held, 10)
    assert [reply.json()["notifications"][0]["title"] for reply in replies.values()] == ["wakes both"] * 2
    first.wait_for_held_polls(0)
    second.wait_for_held_polls(0)
    after = scrape(second)
    assert value(after, "notify_polls_held") == 0
    assert answered(after, "woken") == answered(before, "woken") + 2
    delivered = value(after, "notify_delivery_seconds_count") - value(before, "notify_delivery_seconds_count")
    assert delivered == 2
    # A publish to a woken poll on loopback: well under a second each.
    latency = value(after, "notify_delivery_seconds_sum") - value(before, "notify_delivery_seconds_sum")
    assert 0 <= latency < 2
    assert value(after, "notify_db_seconds_count") > value(before, "notify_db_seconds_count")

    body = json.dumps({"data": {"text": "hi"}}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert first.request("POST", "/notify/topics/room:metrics/publish", headers=headers, body=body).status == 201
    published = scrape(second)
    assert value(published, "notify_topic_messages_published_total") == (
        value(before, "notify_topic_messages_published_total") + 1
    )


@pytest.mark.system  # three uvicorn workers
def test_a_worker_that_stops_leaves_the_sums_of_live_gauges(workers, django_db_blocker):
    """A third worker sharing the directory adds its hub to notify_redis_connected; stopped
    (SIGTERM), its live gauges leave the sums: the others' scrape shows 2 hubs again, not 3."""
    first, second = workers
    for server in (first, second):
        assert server.request("GET", "/notify/health").status == 200  # its hub is connected
    directory = Path(first.env["PROMETHEUS_MULTIPROC_DIR"])
    with django_db_blocker.unblock():
        third = metrics_server(directory).start()
    try:
        assert third.request("GET", "/notify/health").status == 200  # its hub connects
        assert value(scrape(first), "notify_redis_connected") == 3
    finally:
        third.stop()
    assert value(scrape(first), "notify_redis_connected") == 2


@pytest.mark.system  # two uvicorn workers
def test_a_held_poll_that_times_out_is_counted_as_timed_out(workers, make_user, token_for):
    first, second = workers
    token = token_for(make_user())
    cursor = first.poll(token).json()["cursor"]
    before = scrape(second)
    assert first.poll(token, after=cursor, timeout=0.2).json()["notifications"] == []
    assert answered(scrape(second), "timed_out") == answered(before, "timed_out") + 1


@pytest.mark.system
def test_the_metrics_answer_only_staff_or_the_token(workers, make_user, client):
    """Without credentials, with a wrong token or as a user who is not staff: 403 JSON. Staff
    (their session) and the token: the exposition."""
    first, _ = workers
    expect_error(first.request("GET", "/notify/metrics"), 403, "forbidden")
    wrong = first.request("GET", "/notify/metrics", headers={"Authorization": "Bearer not-the-token-at-all"})
    expect_error(wrong, 403, "forbidden")
    assert first.request("GET", "/notify/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200

    staff, user = make_user(is_staff=True), make_user()
    with override_settings(NOTIFY={**settings.NOTIFY, "METRICS": True}):
        client.force_login(user)
        assert client.get("/notify/metrics").status_code == 403
        client.force_login(staff)
        reply = client.get("/notify/metrics")
        assert reply.status_code == 200 and b"notify_polls_held" in reply.content


@pytest.mark.unit
def test_the_metrics_url_is_404_while_metrics_are_off(client):
    reply = client.get("/notify/metrics")
    assert reply.status_code == 404 and reply.json()["error"] == "not_found"
    assert "NOTIFY['METRICS']" in reply.json()["detail"]


@pytest.mark.unit
def test_the_grafana_dashboard_reads_only_metrics_notify_exports():
    """Every notify_* series the dashboard queries is one the exposition has (a renamed metric
    would leave a panel silently empty)."""
    dashboard = json.loads((Path(__file__).resolve().parents[1] / "deploy/grafana/notify-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bnotify_[a-z_]+", target["expr"])
    }
    with override_settings(NOTIFY={**settings.NOTIFY, "METRICS": True}):
        from notify import metrics

        text = metrics.exposition()[0].decode()
    families = list(text_string_to_metric_families(text))
    exported = {sample.name for family in families for sample in family.samples}
    exported |= {f"{family.name}_total" for family in families if family.type == "counter"}  # labelled, none yet
    assert queried and queried <= exported, sorted(queried - exported)
