"""The demo's pages: a live inbox (with a "Remind me" form, and a "Like my post" button that shows
grouping), a form for staff to notify a user, and chat rooms (topic streams ``room:<name>``)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

import notify
from notify import presence, topics
from notify.conf import conf
from notify.forms import CheckedContent
from notify.limits import LimitExceeded, bounded_reminders
from notify.models import Level, TopicMessage

# Notifications the inbox renders; newer ones are added live by notify.js.
INBOX_SIZE = 50


def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``: browsers ask for it whatever a page links to (the admin, JSON answers,
    a typed-in URL); send them to the icon base.html links rather than answer 404."""
    return HttpResponsePermanentRedirect(static("demo/favicon.svg"))


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    """The site's 403 page (templates/403.html), as Django's handler403 renders it for PermissionDenied.

    The demo's own refusals answer with it directly: raising PermissionDenied would log a
    traceback for an ordinary refusal."""
    return render(request, "403.html", {"exception": reason}, status=403)


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    mine = request.user.notifications  # type: ignore[union-attr]
    context = {"notifications": mine.delivered().order_by("-seq")[:INBOX_SIZE], "unread_count": mine.unread().count()}
    context.update(
        remind_form=RemindForm(), reminders=mine.filter(seq__isnull=True, page=True).order_by("deliver_at")[:10]
    )
    return render(request, "demo/inbox.html", context)


class SendForm(CheckedContent, forms.Form):
    recipient = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        to_field_name="username",
    )
    title = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    level = forms.ChoiceField(choices=Level.choices, initial=Level.INFO)
    url = forms.CharField(
        label="Link", max_length=500, required=False, help_text="Where the notification leads, e.g. /inbox/"
    )


@login_required
def send(request: HttpRequest) -> HttpResponse:
    """Send one notification to one user (staff with ``notify.add_notification``; 403 for others)."""
    if not request.user.has_perm("notify.add_notification"):
        return forbidden(request, "Sending notifications needs the permission to add them.")
    form = SendForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        recipient = form.cleaned_data["recipient"]
        sent = notify.send(
            recipient,
            form.cleaned_data["title"],
            form.cleaned_data["body"],
            level=form.cleaned_data["level"],
            kind="message",
            url=form.cleaned_data["url"],
        )
        if not sent:
            messages.info(request, f"Not sent: {recipient.get_username()} turned staff messages off (Preferences).")
        elif not sent[0].page:
            messages.success(request, f"Sent to {recipient.get_username()}, by email only (their preferences).")
        else:
            messages.success(request, f"Sent to {recipient.get_username()}.")
        return redirect("send")
    return render(request, "demo/send.html", {"form": form})


# The "Remind me" choices, in seconds. The default is the first, 10 s: README's quick start
# says "Remind me in 10 seconds".
REMINDER_DELAYS = {10: "in 10 seconds", 60: "in 1 minute", 3600: "in 1 hour"}


class RemindForm(forms.Form):
    """The inbox's "Remind me" form: a reminder to oneself, delivered later by notify_scheduler."""

    delay = forms.TypedChoiceField(choices=list(REMINDER_DELAYS.items()), coerce=int, initial=10)
    title = forms.CharField(max_length=200, required=False, empty_value="Reminder")


@login_required
@require_POST
def remind(request: HttpRequest) -> HttpResponse:
    form = RemindForm(request.POST)
    if form.is_valid():
        delay = form.cleaned_data["delay"]
        deliver_at = timezone.now() + timedelta(seconds=delay)
        # No clock time in the text: the page shows times in the browser's time zone, and
        # the notification's own time is when it was asked for.
        asked = f"You asked to be reminded {REMINDER_DELAYS[delay]}."
        try:
            # At most MAX_PENDING_REMINDERS_PER_USER pending: each is a row until it is due.
            with bounded_reminders(request.user.pk):
                sent = notify.send(
                    request.user, form.cleaned_data["title"], asked, kind="reminder", deliver_at=deliver_at
                )
        except LimitExceeded as refused:
            messages.error(request, refused.detail)
            page = inbox(request)  # the page the form is on, with the refusal, as a 429
            page.status_code = refused.status
            page["Retry-After"] = str(refused.retry_after)
            return page
        if not sent:
            messages.error(request, "Your preferences turn reminders off: change them on the Preferences page.")
        elif not sent[0].page:
            messages.success(request, "Reminder set: your preferences send reminders by email only.")
        else:
            # Tagged with the reminder: the inbox clears this notice when that reminder arrives.
            text = f"Reminder set: it will appear here {REMINDER_DELAYS[delay]}."
            messages.success(request, text, extra_tags=f"reminder:{sent[0].pk}")
    else:
        messages.error(request, "Choose when to be reminded: " + ", ".join(REMINDER_DELAYS.values()) + ".")
    return redirect("inbox")


# The inbox's "Like my post" button (grouping, docs/grouping.md): each press is a like by the next
# of these made-up people, and the likes of one post collapse into one notification while it is
# unread: "Grace and Ada liked your post", then "Linus and 2 others liked your post".
LIKERS = ["Ada", "Grace", "Linus", "Guido", "Barbara", "Ken", "Margaret"]
LIKED_POST = {"kind": "demo.like", "group": "post:1"}


@login_required
@require_POST
def like(request: HttpRequest) -> HttpResponse:
    """A like of the user's own demo post, by someone made up: a grouped notification to them."""
    mine = request.user.notifications  # type: ignore[union-attr]
    liked = mine.unread().filter(**LIKED_POST).values_list("group_count", flat=True).first() or 0
    notify.send(
        request.user,
        "{actors} liked your post “Hello, notify”",
        **LIKED_POST,
        actor=LIKERS[liked % len(LIKERS)],
        url=reverse("inbox"),
    )
    return redirect("inbox")


# Messages a chat room renders; newer ones are added live by notify.js.
CHAT_HISTORY = 50
DEFAULT_ROOM = "lobby"
# What the room field of "Join" accepts: the <slug:room> of the chat URL, short enough
# that "room:<name>" is a topic name (at most 100 characters). Also the field's HTML
# pattern, which browsers compile with the "v" flag: there a bare "-" in a class is invalid.
ROOM_PATTERN = r"[a-zA-Z0-9_\-]{1,90}"


@login_required
def chat_index(request: HttpRequest) -> HttpResponse:
    """``/chat/?room=<name>`` (the "Join" form) or ``/chat/``: to that room, or the lobby."""
    room = request.GET.get("room", "").strip()
    valid = forms.RegexField(regex=f"^{ROOM_PATTERN}$", required=True)
    try:
        room = valid.clean(room)
    except forms.ValidationError:
        room = DEFAULT_ROOM
    return redirect("chat", room=room)


@login_required
def chat(request: HttpRequest, room: str) -> HttpResponse:
    """A chat room: topic ``room:<room>``. Its last messages are rendered here; notify.js
    follows the topic (in the same poll as the inbox) and posts with ``publish``."""
    topic = f"room:{room}"
    try:
        topics.check_name(topic)
    except topics.InvalidTopic:
        return redirect("chat", room=DEFAULT_ROOM)  # a name too long for a topic
    if not topics.permitted(request.user.pk, topic, "read"):
        return forbidden(request, f"You may not read the room #{room}.")
    newest = TopicMessage.objects.filter(topic_id=topic).select_related("sender").order_by("-seq")[:CHAT_HISTORY]
    # The room, and its join and leave events (presence:<topic>, for a name short enough to take the prefix).
    events = presence.events_topic(topic) if conf.PRESENCE else None
    context = {
        "room": room,
        "topic": topic,
        "follow": f"{topic} {events}" if events else topic,
        "presence": conf.PRESENCE,
        "chat_messages": list(reversed(newest)),
        "room_pattern": ROOM_PATTERN,
    }
    return render(request, "demo/chat.html", context)
