from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.formats import date_format
from django.views.defaults import permission_denied

from notify import dashboard
from notify.conf import conf
from notify.forms import BroadcastForm, NotificationForm
from notify.models import (
    ApiToken,
    ApiTokenQuerySet,
    Broadcast,
    Notification,
    NotificationPreferences,
    NotificationQuerySet,
    PreferenceRule,
)
from notify.sending import send, send_broadcast

SEND_PERMISSION = "notify.add_notification"
# The field a broadcast form to all active users comes back with once confirmed.
CONFIRM = "_confirm"


class DeliveryFilter(admin.SimpleListFilter):
    title = "delivery"
    parameter_name = "delivery"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("scheduled", "scheduled (not delivered yet)"),
            ("delivered", "delivered"),
            ("email_only", "by email only (never in the page)"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Notification]) -> QuerySet[Notification]:
        if self.value() == "scheduled":
            return queryset.filter(seq__isnull=True, page=True)
        if self.value() == "email_only":
            return queryset.filter(page=False)
        if self.value() == "delivered":
            return queryset.filter(seq__isnull=False)
        return queryset


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["title", "recipient", "level", "is_read", "created_at", "delivery"]
    list_filter = ["level", "kind", ("read_at", admin.EmptyFieldListFilter), DeliveryFilter, "created_at"]
    search_fields = ["title", "body", "recipient__username", "recipient__email"]
    raw_id_fields = ["recipient"]
    readonly_fields = ["seq"]
    date_hierarchy = "created_at"
    actions = ["mark_read"]

    @admin.display(boolean=True, description="read", ordering="read_at")
    def is_read(self, obj: Notification) -> bool:
        return obj.read

    @admin.display(description="delivery", ordering="deliver_at")
    def delivery(self, obj: Notification) -> str:
        if obj.seq is not None:
            return "delivered" if obj.deliver_at is None else f"delivered (reminder for {_when(obj.deliver_at)})"
        return f"scheduled for {_when(obj.deliver_at)}" if obj.deliver_at else "not delivered"

    def get_readonly_fields(self, request: HttpRequest, obj: Notification | None = None) -> list[str]:
        # A reminder is moved with notify.reschedule(), which races safely with the
        # scheduler; the change form sets deliver_at only on a new notification.
        # The recipient is fixed at creation (Notification.FROZEN_FIELDS): moved, a
        # row collides with its new owner's later seqs (the model refuses it too).
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "recipient", "deliver_at"] if obj is not None else fields

    @admin.action(description="Mark selected notifications as read", permissions=["change"])
    def mark_read(self, request: HttpRequest, queryset: NotificationQuerySet) -> None:
        self.message_user(request, f"Marked {queryset.mark_read()} notification(s) as read.")


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    list_display = ["title", "level", "audience", "recipient_count", "sent_at", "created_by"]
    list_filter = ["level", "sent_at"]
    search_fields = ["title", "body"]
    filter_horizontal = ["groups"]
    form = BroadcastForm
    fields = ["title", "body", "level", "url", "groups", "created_by", "sent_at", "recipient_count"]
    readonly_fields = ["created_by", "sent_at", "recipient_count"]

    def get_urls(self) -> list[URLPattern]:
        # The live dashboard: /admin/notify/broadcast/dashboard/ (docs/admin.md#live-dashboard).
        return [path("dashboard/", self.dashboard_view, name="notify_dashboard"), *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """The live dashboard: for active staff with notify.dashboard.PERMISSION, 403 for anyone else
        signed in; it follows notify.dashboard.TOPIC, which every worker feeds while it is open."""
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), self.admin_site.name + ":login")
        if not dashboard.allowed(request.user):
            # Rendered here, not raised: Django logs a raised PermissionDenied with its traceback.
            return permission_denied(
                request,
                PermissionDenied(f"The dashboard is for active staff with the {dashboard.PERMISSION} permission."),
            )
        dashboard.watch()  # every worker publishes from now on, before the page's first poll
        context = {
            **self.admin_site.each_context(request),
            "title": "Live dashboard",
            "opts": self.model._meta,
            "topic": dashboard.TOPIC,
            "interval": conf.DASHBOARD_INTERVAL,
            "broadcasts": list(Broadcast.objects.filter(sent_at__isnull=False).order_by("-sent_at")[:10]),
        }
        response = TemplateResponse(request, "admin/notify/dashboard.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.display(description="to")
    def audience(self, obj: Broadcast) -> str:
        names = [group.name for group in obj.groups.all()]
        return ", ".join(names) if names else "all active users"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Saving a new announcement sends it: that takes the send permission too.
        return super().has_add_permission(request) and request.user.has_perm(SEND_PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj: Broadcast | None = None) -> bool:
        # A sent announcement is a record of what went out: it can't be edited.
        if obj is not None and obj.sent_at is not None:
            return False
        # Saving an unsent one sends it.
        return super().has_change_permission(request, obj) and request.user.has_perm(SEND_PERMISSION)

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> Any:
        if request.method == "POST" and CONFIRM not in request.POST:
            confirmation = self.confirm_sending_to_all(request, object_id)
            if confirmation is not None:
                return confirmation
        return super().changeform_view(request, object_id, form_url, extra_context)

    def confirm_sending_to_all(self, request: HttpRequest, object_id: str | None) -> TemplateResponse | None:
        """The page asking "send to all N active users?" if this POST would send to all, else None.

        Like Django's delete confirmation: nothing is saved or sent until the same form
        comes back with CONFIRM. An invalid form, one to chosen groups, or a request
        without the permission goes on to the usual view (errors, sending, 403).
        """
        obj = self.get_object(request, object_id) if object_id is not None else None
        if object_id is not None and (obj is None or not self.has_change_permission(request, obj)):
            return None
        if obj is None and not self.has_add_permission(request):
            return None
        form = self.get_form(request, obj, change=obj is not None)(request.POST, request.FILES, instance=obj)
        if not form.is_valid() or form.cleaned_data.get("groups"):
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Send to all active users?",
            "opts": self.model._meta,
            "broadcast_title": form.cleaned_data["title"],
            "count": Broadcast().recipients().count(),
            "posted": [(name, values) for name, values in request.POST.lists() if name != "csrfmiddlewaretoken"],
            "confirm_name": CONFIRM,
        }
        return TemplateResponse(request, "admin/notify/broadcast/confirm_send.html", context)

    def save_model(self, request: HttpRequest, obj: Broadcast, form: Any, change: bool) -> None:
        if not change:
            assert request.user.is_authenticated  # the admin lets in signed-in staff only
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        broadcast = form.instance
        if broadcast.sent_at is None:  # groups are saved now: send
            count = send_broadcast(broadcast)
            self.message_user(request, f"“{broadcast}” was sent to {count} user(s).", messages.SUCCESS)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "name", "created_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username", "name", "key"]
    # The user is fixed at creation (ApiToken.FROZEN_FIELDS): staff who may revoke
    # tokens must not be able to hand one, and its identity, to another user.
    readonly_fields = ["user", "key", "created_at"]
    fields = ["user", "name", "key", "created_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued by `manage.py notify_token`, which shows the secret once

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: ApiTokenQuerySet) -> None:
        tokens = list(queryset.active())
        for token in tokens:  # one by one: each leaves the token cache
            token.revoke()
        self.message_user(request, f"Revoked {len(tokens)} token(s).")


@admin.action(description="Send notification…")
def send_notification(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
    """An admin action for users: an intermediate form, then one notification per selected user.

    notify adds it to the registered user admin; a project with its own UserAdmin
    registered later adds ``notify.admin.send_notification`` to its ``actions``.
    """
    if not request.user.has_perm(SEND_PERMISSION):
        raise PermissionDenied
    form = NotificationForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        sent = send(queryset, **form.cleaned_data)
        model_admin.message_user(
            request, f"Sent “{form.cleaned_data['title']}” to {len(sent)} user(s).", messages.SUCCESS
        )
        return None  # back to the list
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Send a notification",
        "form": form,
        "queryset": queryset,
        "opts": model_admin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": "send_notification",
    }
    return TemplateResponse(request, "admin/notify/send_notification.html", context)


def _when(moment: Any) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def _offer_send_action_on_users() -> None:
    user_admin = admin.site._registry.get(get_user_model())
    if user_admin is not None and send_notification not in (user_admin.actions or ()):
        user_admin.actions = [*(user_admin.actions or ()), send_notification]


_offer_send_action_on_users()


class PreferenceRuleInline(admin.TabularInline):
    model = PreferenceRule
    extra = 0
    fields = ["kind", "level", "page", "email"]

    def get_max_num(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> int:
        return conf.MAX_PREFERENCE_RULES


@admin.register(NotificationPreferences)
class NotificationPreferencesAdmin(admin.ModelAdmin):
    """A user's preferences and their rules on one page (notify.preferences)."""

    list_display = ["user", "email_enabled", "quiet_start", "quiet_end", "timezone", "updated_at"]
    list_filter = ["email_enabled"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]
    inlines = [PreferenceRuleInline]

    def get_readonly_fields(self, request: HttpRequest, obj: NotificationPreferences | None = None) -> list[str]:
        # Whose preferences they are is fixed once created: re-owning them would hand one
        # user's choices (and unsubscribe) to another.
        return ["user", "updated_at"] if obj is not None else ["updated_at"]
