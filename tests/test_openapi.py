"""notify/openapi.json against a running server: schemathesis sends generated input (valid and
invalid) to every operation in the document and checks that nothing answers 500 and that every
answer (status, content type, headers, body) is one the document describes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

import notify
from notify.models import Notification
from notify.openapi import document
from tests.server import Server

# Generated cases per operation and mode (positive, negative), beside the examples and coverage
# phases' own: the whole run stays within about 30 s on two shared cores.
MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def api_server(redis_answers: None, django_db_setup: Any, django_db_blocker: Any) -> Iterator[Server]:
    """A uvicorn of its own: polls held 0.2 s at most (generated cursors often hold), and limits
    high enough that generated polls and publishes are answered rather than refused 429."""
    env = {
        "NOTIFY_MAX_TIMEOUT": "0.2",
        "NOTIFY_DEFAULT_TIMEOUT": "0.2",
        "NOTIFY_MAX_SNAPSHOTS_PER_SECOND": "1000",
        "NOTIFY_MAX_PUBLISHES_PER_MINUTE": "10000",
        "NOTIFY_MAX_TOPIC_PUBLISHES_PER_MINUTE": "10000",
        "NOTIFY_MAX_PREFERENCE_CHANGES_PER_MINUTE": "10000",
    }
    with django_db_blocker.unblock():
        live = Server(env=env).start()
    yield live
    live.stop()  # and the server logged no traceback (Server.check_log)


@pytest.fixture
def alice_with_history(alice: Any) -> Any:
    """Alice, with more notifications than one history page holds, read and unread; she may use
    the demo's rooms (project/demo/topics.py: signed-in users, "room:*")."""
    levels = ["info", "success", "warning", "error"]
    Notification.objects.bulk_create(
        Notification(recipient=alice, title=f"n{i}", level=levels[i % 4], kind=f"k{i % 3}") for i in range(120)
    )
    alice.notifications.filter(seq__lte=40).update(read_at=timezone.now())
    for actor in ("bob", "carol"):  # one grouped notification (docs/grouping.md): its group object
        notify.send(alice, "{actors} liked your post", kind="k0", group="post:1", actor=actor)
    notify.publish("room:1", {"text": "hello"})
    return alice


schema = schemathesis.openapi.from_dict(document())
# The token is sent as a header (below), not generated.
schema.config.generation.update(with_security_parameters=False)


@pytest.mark.system  # a uvicorn of its own (api_server)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
def test_every_operation_answers_as_the_document_says(
    case: Any, api_server: Server, alice_with_history: Any, token: str
) -> None:
    # Left out: positive_data_acceptance, which wants a 2xx for every input the document
    # allows. A cursor is valid by its form but refused (400) when it is ahead of the user's
    # stream, and a topic (403) when the project's hook refuses it: what the server knows,
    # not the document.
    case.call_and_validate(
        base_url=f"{api_server.url}/notify",
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[positive_data_acceptance],
    )


def test_the_document_is_served_with_the_mount_point_as_its_server(server):
    reply = server.request("GET", "/notify/openapi.json")
    assert reply.status == 200
    served = reply.json()
    assert served["servers"] == [{"url": "/notify", "description": "this site"}]
    assert served["paths"] == document()["paths"]
    assert served["openapi"] == "3.1.0"


def test_the_document_is_shipped_in_the_package():
    shipped = Path(notify.__file__).with_name("openapi.json")
    assert json.loads(shipped.read_text()) == document()
