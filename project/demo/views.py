"""The demo's pages: a live inbox (with a "Remind me" form), and a form for staff to notify a user."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

import notify
from notify.models import Level

# Notifications the inbox renders; newer ones are added live by notify.js.
INBOX_SIZE = 50


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    mine = request.user.notifications  # type: ignore[union-attr]
    context = {"notifications": mine.delivered().order_by("-seq")[:INBOX_SIZE], "unread_count": mine.unread().count()}
    context.update(remind_form=RemindForm(), reminders=mine.filter(seq__isnull=True).order_by("deliver_at")[:10])
    return render(request, "demo/inbox.html", context)


class SendForm(forms.Form):
    recipient = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        to_field_name="username",
    )
    title = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    level = forms.ChoiceField(choices=Level.choices, initial=Level.INFO)
    url = forms.CharField(max_length=500, required=False, help_text="Where the notification leads, e.g. /inbox/")


@login_required
@permission_required("notify.add_notification", raise_exception=True)
def send(request: HttpRequest) -> HttpResponse:
    """Send one notification to one user (staff with ``notify.add_notification``; 403 for others)."""
    form = SendForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        recipient = form.cleaned_data["recipient"]
        notify.send(
            recipient,
            form.cleaned_data["title"],
            form.cleaned_data["body"],
            level=form.cleaned_data["level"],
            url=form.cleaned_data["url"],
        )
        messages.success(request, f"Sent to {recipient.get_username()}.")
        return redirect("send")
    return render(request, "demo/send.html", {"form": form})


# The "Remind me" choices, in seconds.
REMINDER_DELAYS = {10: "in 10 seconds", 60: "in 1 minute", 3600: "in 1 hour"}


class RemindForm(forms.Form):
    """The inbox's "Remind me" form: a reminder to oneself, delivered later by notify_scheduler."""

    delay = forms.TypedChoiceField(choices=list(REMINDER_DELAYS.items()), coerce=int, initial=60)
    title = forms.CharField(max_length=200, required=False, empty_value="Reminder")


@login_required
@require_POST
def remind(request: HttpRequest) -> HttpResponse:
    form = RemindForm(request.POST)
    if form.is_valid():
        delay = form.cleaned_data["delay"]
        now = timezone.now()
        deliver_at = now + timedelta(seconds=delay)
        asked = f"You asked at {timezone.localtime(now):%H:%M:%S} to be reminded {REMINDER_DELAYS[delay]}."
        notify.send(request.user, form.cleaned_data["title"], asked, deliver_at=deliver_at)
        messages.success(request, f"Reminder set: it will appear here {REMINDER_DELAYS[delay]}.")
    else:
        messages.error(request, "Choose when to be reminded: " + ", ".join(REMINDER_DELAYS.values()) + ".")
    return redirect("inbox")
