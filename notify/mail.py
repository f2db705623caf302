"""The digest email: its context, templates and headers (templates overridable the Django way).

``notify/email/digest_subject.txt``, ``digest.txt`` and ``digest.html`` are rendered with
the context ``digest_context`` builds; a project overrides any of them with a template of
the same name earlier in its template search path (its own ``templates/`` folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

from notify.conf import conf

if TYPE_CHECKING:
    from notify.models import Digest, Notification

SUBJECT_TEMPLATE = "notify/email/digest_subject.txt"
TEXT_TEMPLATE = "notify/email/digest.txt"
HTML_TEMPLATE = "notify/email/digest.html"

# The unsubscribe link's token: the user's id signed with SECRET_KEY, for this use only
# (notify.unsubscribe says why it never expires).
UNSUBSCRIBE_SALT = "notify.unsubscribe"


def make_token(user_id: int) -> str:
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign(str(user_id))


def user_id_from(token: str) -> int | None:
    """The user id an unsubscribe token was made for, or None if it is not one of ours."""
    try:
        value = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign(token)
    except signing.BadSignature:
        return None
    return int(value) if value.isdigit() else None


def absolute(url: str) -> str:
    """``url`` on SITE_URL if it is a path; an http(s) URL as it is; anything else: ''."""
    if not url:
        return ""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return url
    if scheme or not url.startswith("/") or url.startswith("//"):
        return ""  # javascript:, mailto:, a scheme-relative or relative URL: no link in an email
    return f"{conf.SITE_URL or ''}{url}"


def unsubscribe_url(user_id: int) -> str:
    return absolute(reverse("notify:unsubscribe", args=[make_token(user_id)]))


def digest_context(user: Any, notifications: Sequence[Notification], total: int) -> dict[str, Any]:
    """What the templates get.

    ``groups``: the notifications by kind, in the order each kind first appears, each a
    dict of ``kind`` ('' for none), ``count`` and ``notifications`` (each with
    ``absolute_url`` set: '' without a link). ``total``: the unread notifications the
    digest is about; ``more``: those not listed (past EMAIL_DIGEST_MAX_ITEMS).
    """
    groups: dict[str, dict[str, Any]] = {}
    for notification in notifications:
        notification.absolute_url = absolute(notification.url)  # type: ignore[attr-defined]
        group = groups.setdefault(notification.kind, {"kind": notification.kind, "count": 0, "notifications": []})
        group["count"] += 1
        group["notifications"].append(notification)
    site = conf.SITE_URL or ""
    return {
        "user": user,
        "groups": list(groups.values()),
        "total": total,
        "shown": len(notifications),
        "more": total - len(notifications),
        "site_url": site,
        "site_name": urlsplit(site).hostname or site,
        "inbox_url": absolute(conf.INBOX_URL),
        "unsubscribe_url": unsubscribe_url(user.pk),
    }


def digest_message(
    digest: Digest, notifications: Sequence[Notification], total: int, connection: Any = None
) -> EmailMultiAlternatives:
    """The digest as an email: text and HTML, with its fixed Message-ID and RFC 8058 headers."""
    user = digest.user
    context = digest_context(user, notifications, total)
    subject = " ".join(render_to_string(SUBJECT_TEMPLATE, context).split())  # one line, whatever the template
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(TEXT_TEMPLATE, context),
        from_email=conf.EMAIL_FROM or settings.DEFAULT_FROM_EMAIL,
        to=[getattr(user, user.get_email_field_name())],
        connection=connection,
        headers={
            "Message-ID": digest.message_id,
            "List-Unsubscribe": f"<{context['unsubscribe_url']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            # RFC 3834: sent by a program, so autoresponders do not answer it.
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(render_to_string(HTML_TEMPLATE, context), "text/html")
    return message
