"""notify.contrib.drf: the history as a DRF viewset, in a project's own router. Skipped without DRF.

In-process (DRF's APIClient on the test database): the viewset's HTTP face is DRF's, and
the queries are notify.history's, which tests/test_history.py runs over real HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rest_framework")

from django.test import override_settings  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework.authentication import SessionAuthentication  # noqa: E402
from rest_framework.routers import DefaultRouter  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

import notify  # noqa: E402
from notify.contrib.drf import BearerTokenAuthentication, NotificationViewSet  # noqa: E402
from notify.models import ApiToken, Notification  # noqa: E402


class ViewSet(NotificationViewSet):
    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]


router = DefaultRouter()
router.register("notifications", ViewSet, basename="notification")
urlpatterns = [path("api/", include(router.urls))]

pytestmark = pytest.mark.usefixtures("_drf_urls")


@pytest.fixture
def _drf_urls():  # type: ignore[no-untyped-def]
    with override_settings(ROOT_URLCONF=__name__):
        yield


def client_for(token: str | None = None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def titles(answer: Any) -> list[str]:
    return [n["title"] for n in answer.json()["results"]]


def test_the_list_pages_newest_first_without_loss_or_duplicate(alice, token):
    for i in range(5):
        notify.send(alice, f"n{i}", kind="k")
    client = client_for(token)
    seen, url = [], "/api/notifications/?limit=2"
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.content
        seen += titles(answer)
        url = answer.json()["next"]
    assert seen == ["n4", "n3", "n2", "n1", "n0"]
    first = client.get("/api/notifications/").json()["results"][0]
    assert set(first) == {"id", "title", "body", "level", "kind", "url", "data", "created_at", "read", "group"}


def test_filters_are_the_historys_and_refused_in_notifys_shape(alice, token):
    notify.send(alice, "invoice", kind="billing.invoice")
    notify.send(alice, "build", kind="ci", level="error")
    client = client_for(token)
    assert titles(client.get("/api/notifications/?kind=ci")) == ["build"]
    assert titles(client.get("/api/notifications/?level=info,warning")) == ["invoice"]
    refused = client.get("/api/notifications/?level=fatal")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_filter" and "info, success" in refused.json()["detail"]


def test_read_unread_delete_and_count(alice, token):
    a, b, c = (notify.send(alice, t)[0] for t in "abc")
    client = client_for(token)
    assert client.post("/api/notifications/read/", {"ids": [a.pk, b.pk]}, format="json").json() == {
        "updated": 2,
        "unread_count": 1,
    }
    assert client.post("/api/notifications/unread/", {"ids": [a.pk]}, format="json").json()["unread_count"] == 2
    assert client.post("/api/notifications/delete/", {"ids": [c.pk]}, format="json").json() == {
        "deleted": 1,
        "unread_count": 1,
    }
    assert client.get("/api/notifications/unread_count/").json() == {"unread_count": 1}
    assert client.post("/api/notifications/read/", {"all": True}, format="json").json()["unread_count"] == 0
    assert client.delete(f"/api/notifications/{a.pk}/").status_code == 204
    assert list(Notification.objects.values_list("title", flat=True)) == ["b"]


@pytest.mark.parametrize(
    ("action", "body"),
    [("unread", {"all": True}), ("delete", {"all": True}), ("read", {}), ("delete", {"ids": [0]})],
)
def test_bad_bodies_get_400_and_change_nothing(alice, token, action, body):
    [a] = notify.send(alice, "a")
    assert client_for(token).post(f"/api/notifications/{action}/", body, format="json").status_code == 400
    assert Notification.objects.filter(pk=a.pk, read_at=None).exists()


def test_more_than_a_thousand_ids_get_400(alice, token):
    [a] = notify.send(alice, "a")
    reply = client_for(token).post("/api/notifications/delete/", {"ids": [a.pk] * 1001}, format="json")
    assert reply.status_code == 400
    assert Notification.objects.filter(pk=a.pk).exists()


def test_without_credentials_or_with_a_revoked_token_401(alice, token):
    assert client_for().get("/api/notifications/").status_code in (401, 403)
    ApiToken.objects.get(user=alice).revoke()
    refused = client_for(token).get("/api/notifications/")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert refused.json() == {"detail": "The bearer token is invalid or has been revoked."}


def test_another_users_notifications_are_out_of_reach(make_user, token_for):
    alice, bob = make_user(), make_user()
    [hers] = notify.send(alice, "alice's")
    client = client_for(token_for(bob))
    assert titles(client.get("/api/notifications/")) == []
    assert client.get(f"/api/notifications/{hers.pk}/").status_code == 404
    assert client.delete(f"/api/notifications/{hers.pk}/").status_code == 404
    assert client.post("/api/notifications/delete/", {"ids": [hers.pk]}, format="json").json()["deleted"] == 0
    assert client.post("/api/notifications/read/", {"all": True}, format="json").json()["updated"] == 0
    assert Notification.objects.filter(pk=hers.pk, read_at=None).exists()


def test_a_session_works_as_drf_authenticates_it(alice):
    notify.send(alice, "a")
    client = APIClient()
    client.force_login(alice)
    assert titles(client.get("/api/notifications/")) == ["a"]
