"""A thin Django REST framework face for the history API, for projects that use DRF.

Nothing here is needed to use the history: ``notify.urls`` serves it without DRF
(docs/history.md). This module only lets a DRF project put the same operations in
its own router, with its own authentication, permissions and schema tools::

    from rest_framework.routers import DefaultRouter
    from notify.contrib.drf import NotificationViewSet

    router = DefaultRouter()
    router.register("notifications", NotificationViewSet, basename="notification")

which gives ``GET notifications/`` (newest first, DRF's cursor pagination, the
filters ``unread``, ``level`` and ``kind``), ``GET``/``DELETE notifications/<id>/``,
``POST notifications/read/``, ``notifications/unread/``, ``notifications/delete/``
and ``GET notifications/unread_count/``. The queries, the filters' rules and the
answers to read, unread and delete are the history's own (notify.history).
``BearerTokenAuthentication`` accepts notify's API tokens, so one token serves the
poll and the project's DRF views.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import authentication, exceptions, mixins, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from notify import history
from notify.auth import user_id_for_token
from notify.conf import conf
from notify.models import Notification, NotificationQuerySet
from notify.params import MAX_READ_IDS, BadRequest

__all__ = [
    "BearerTokenAuthentication",
    "HistoryPagination",
    "IdsSerializer",
    "NotificationSerializer",
    "NotificationViewSet",
]


class NotifyBadRequest(exceptions.APIException):
    """notify's 400, in notify's shape: ``{"error": <code>, "detail": <what is accepted>}``."""

    status_code = 400

    def __init__(self, problem: BadRequest) -> None:
        super().__init__()
        self.detail = {"error": problem.code, "detail": problem.detail}


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer ntf_…``: notify's API tokens (``manage.py notify_token``) for DRF views."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            return None  # not ours: the next authentication class may know it
        user_id = user_id_for_token(raw.strip())
        user = get_user_model()._default_manager.filter(pk=user_id, is_active=True).first() if user_id else None
        if user is None:
            raise exceptions.AuthenticationFailed("The bearer token is invalid or has been revoked.")
        return user, None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="notify"'


class NotificationSerializer(serializers.ModelSerializer):
    """A notification, read-only: the fields a poll answers."""

    read = serializers.SerializerMethodField()
    group = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "title", "body", "level", "kind", "url", "data", "created_at", "read", "group"]
        read_only_fields = fields

    def get_read(self, notification: Notification) -> bool:
        return notification.read

    def get_group(self, notification: Notification) -> dict[str, Any] | None:
        group: dict[str, Any] | None = notification.as_dict()["group"]  # docs/grouping.md
        return group


class IdsSerializer(serializers.Serializer):
    """``{"ids": [...]}`` (at most 1000), or ``{"all": true}`` where ``all`` is allowed (context ``allow_all``)."""

    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), max_length=MAX_READ_IDS, required=False
    )
    all = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        allow_all = self.context.get("allow_all", False)
        if allow_all and attrs.get("all") is True and "ids" not in attrs:
            return attrs
        if "ids" not in attrs or "all" in attrs:
            accepted = '{"ids": [...]}' + (' or {"all": true}' if allow_all else "")
            raise serializers.ValidationError(f"Send {accepted}.")
        return attrs


class HistoryPagination(CursorPagination):
    """Newest first by the notifications' positions in the stream, as the history pages;
    ``limit`` up to HISTORY_MAX_LIMIT, HISTORY_DEFAULT_LIMIT without one."""

    ordering = "-seq"
    page_size_query_param = "limit"

    def get_page_size(self, request: Request) -> int:
        self.page_size = conf.HISTORY_DEFAULT_LIMIT
        self.max_page_size = conf.HISTORY_MAX_LIMIT
        size: int = super().get_page_size(request)
        return size


class NotificationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """The signed-in user's notifications (delivered ones; reminders not yet due are left out)."""

    serializer_class = NotificationSerializer
    pagination_class = HistoryPagination
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self) -> NotificationQuerySet:
        rows = Notification.objects.filter(recipient_id=self.request.user.pk).delivered()
        if self.action != "list":
            return rows
        try:
            return history.filtered(rows, history.parse_filters(self.request.query_params))
        except BadRequest as problem:
            raise NotifyBadRequest(problem) from None

    def _ids(self, request: Request, *, allow_all: bool) -> list[int] | None:
        ids = IdsSerializer(data=request.data, context={"allow_all": allow_all})
        ids.is_valid(raise_exception=True)
        found: list[int] | None = ids.validated_data.get("ids")
        return found

    @action(detail=False, methods=["post"])
    def read(self, request: Request) -> Response:
        """Mark read: ``{"ids": [...]}`` or ``{"all": true}``; ``{"updated", "unread_count"}``."""
        return Response(history.mark(request.user.pk, self._ids(request, allow_all=True), read=True))

    @action(detail=False, methods=["post"])
    def unread(self, request: Request) -> Response:
        """Mark unread: ``{"ids": [...]}``; ``{"updated", "unread_count"}``."""
        return Response(history.mark(request.user.pk, self._ids(request, allow_all=False), read=False))

    @action(detail=False, methods=["post"], url_path="delete")
    def delete_many(self, request: Request) -> Response:
        """Delete for good: ``{"ids": [...]}``; ``{"deleted", "unread_count"}`` (docs/history.md, "Deleting")."""
        ids = self._ids(request, allow_all=False)
        assert ids is not None  # allow_all=False
        return Response(history.delete(request.user.pk, ids))

    @action(detail=False, methods=["get"])
    def unread_count(self, request: Request) -> Response:
        return Response({"unread_count": history.unread_count_of(request.user.pk)})
