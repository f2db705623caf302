"""``{% notify_client %}`` and ``{% notify_bell %}``: the browser side of notify.

    {% load notify %}
    {% notify_bell see_all="/inbox/" %}   a bell with an unread badge and a dropdown
    {% notify_client %}                   notify.js (an ES module), configured for the logged-in user
    {% notify_client topics="room:42" %}  ...following topics too, in the same one poll

Both render nothing for anonymous users: there is nothing for them to poll.
"""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.middleware.csrf import get_token
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from notify.conf import conf
from notify.topics import InvalidTopic, check_name

register = template.Library()

_SCHEME = re.compile(r"([^/?#]*):")
_IGNORED = re.compile(r"[\x00-\x20]")  # browsers drop these, so "java\tscript:" is javascript:


def _user(context: template.Context) -> Any:
    request = context.get("request")
    return getattr(request, "user", None) or context.get("user")


def _positive(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise template.TemplateSyntaxError(f"notify_client: {name} must be a positive number, got {value!r}.")
    return number


def _topics(value: Any) -> list[str]:
    names = value.split() if isinstance(value, str) else list(value or ())
    try:
        return list(dict.fromkeys(check_name(name) for name in names))
    except InvalidTopic as bad:
        raise template.TemplateSyntaxError(f"notify_client: {bad}") from None


@register.simple_tag(takes_context=True)
def notify_client(
    context: template.Context,
    *,
    timeout: Any = None,
    limit: Any = None,
    desktop: bool = False,
    autostart: bool = True,
    topics: Any = None,
) -> str:
    """The ``<script type="module">`` of notify.js, configured by data attributes; starts ``Notify.client``.

    ``timeout`` is the poll hold time asked for (seconds; the server clamps it),
    ``limit`` the notifications per answer, ``desktop`` turns on desktop pop-ups
    once the user allows them, ``autostart=False`` leaves ``Notify.client.start()``
    to the page. ``topics`` (names separated by spaces, or a list) are followed
    besides the inbox, in the same poll: ``notify:topic`` events.
    """
    user = _user(context)
    if user is None or not user.is_authenticated:
        return ""
    request = context.get("request")
    attrs: dict[str, Any] = {
        "src": static("notify/notify.js"),
        "data-notify-poll-url": reverse("notify:poll"),
        "data-notify-read-url": reverse("notify:read"),
        "data-notify-timeout": f"{_positive('timeout', timeout if timeout is not None else conf.DEFAULT_TIMEOUT):g}",
        # Names the per-user storage keys, Web Lock and channel: users never share a cursor.
        "data-notify-user": user.pk,
        # notify.js puts the topic's name in place of {topic}.
        "data-notify-publish-url": reverse("notify:topic_publish", kwargs={"name": "__topic__"}).replace(
            "__topic__", "{topic}"
        ),
        "data-notify-presence-url": reverse("notify:topic_presence", kwargs={"name": "__topic__"}).replace(
            "__topic__", "{topic}"
        ),
    }
    names = _topics(topics)
    if names:
        attrs["data-notify-topics"] = " ".join(names)
    if limit is not None:
        attrs["data-notify-limit"] = int(_positive("limit", limit))
    # Rendered into the page because CSRF_COOKIE_HTTPONLY may hide the cookie from scripts.
    token = get_token(request) if request is not None else context.get("csrf_token")
    if token:
        attrs["data-notify-csrf"] = token
    if desktop:
        attrs["data-notify-desktop"] = "true"
    if not autostart:
        attrs["data-notify-autostart"] = "false"
    # A module script runs deferred anyway, in document order with `defer` scripts: pages whose
    # scripts use window.Notify from listeners or later deferred scripts work as they did with
    # the classic script. `defer` is kept for readers of the markup (browsers ignore it here).
    return format_html(
        '<script type="module" defer {}></script>',
        format_html_join(" ", '{}="{}"', ((name, value) for name, value in attrs.items())),
    )


@register.inclusion_tag("notify/bell.html", takes_context=True)
def notify_bell(context: template.Context, *, see_all: str = "", max_items: int = 10) -> dict[str, Any]:
    """A bell with an unread badge and a dropdown of the newest notifications.

    Needs ``{% notify_client %}`` on the same page; ``see_all`` is the URL of a
    full list (e.g. the project's inbox page), shown at the bottom of the dropdown.
    """
    user = _user(context)
    return {
        "authenticated": user is not None and user.is_authenticated,
        "see_all": see_all,
        "max_items": int(max_items),
    }


@register.filter
def notify_url(value: Any) -> str:
    """The notification's URL if it is relative or http(s), else "": never a ``javascript:`` link."""
    url = str(value or "").strip()
    scheme = _SCHEME.match(_IGNORED.sub("", url))
    if scheme and scheme.group(1).lower() not in ("http", "https"):
        return ""
    return url
