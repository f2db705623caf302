"""The queries behind a poll: one user's stream, read synchronously (see notify.db)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from notify.models import Inbox, Notification


def head(user_id: int) -> int:
    """The seq of the user's newest committed notification (0 for none)."""
    return Inbox.objects.filter(user_id=user_id).values_list("last_seq", flat=True).first() or 0


def unread_count(user_id: int) -> int:
    return Notification.objects.filter(recipient_id=user_id).unread().count()


def unread_snapshot(user_id: int, limit: int) -> tuple[int, list[dict[str, Any]], int]:
    """The head, the newest ``limit`` unread notifications up to it (oldest first), and the unread count.

    The head is read first: whatever commits after it is past the returned cursor
    and so comes with the next poll.
    """
    cursor = head(user_id)
    newest = list(
        Notification.objects.filter(recipient_id=user_id, seq__lte=cursor).unread().order_by("-seq")[:limit]
    )
    return cursor, [n.as_dict() for n in reversed(newest)], unread_count(user_id)


def page_after(user_id: int, after: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Up to ``limit`` notifications after ``after``, oldest first, and the cursor past them."""
    rows = list(Notification.objects.filter(recipient_id=user_id, seq__gt=after).order_by("seq")[:limit])
    if not rows:
        return after, []
    return rows[-1].seq, [n.as_dict() for n in rows]


def mark_read(user_id: int, ids: Iterable[int] | None) -> int:
    """Mark the user's notifications read (``ids=None``: all of them); return the unread count."""
    notifications = Notification.objects.filter(recipient_id=user_id)
    if ids is not None:
        notifications = notifications.filter(pk__in=list(ids))
    notifications.mark_read()
    return unread_count(user_id)
