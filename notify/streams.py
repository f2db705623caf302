"""The queries behind a poll: a user's stream or a topic's, read synchronously (see notify.db)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from notify.models import Inbox, Notification, Topic, TopicMessage
from notify.topics import message_dict


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
    return cursor, newest_unread(user_id, cursor, limit), unread_count(user_id)


def newest_unread(user_id: int, head: int, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` unread notifications up to ``head``, oldest first."""
    newest = list(Notification.objects.filter(recipient_id=user_id, seq__lte=head).unread().order_by("-seq")[:limit])
    return [n.as_dict() for n in reversed(newest)]


def page_after(user_id: int, after: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Up to ``limit`` notifications after ``after``, oldest first, and the cursor past them."""
    rows = list(Notification.objects.filter(recipient_id=user_id, seq__gt=after).order_by("seq")[:limit])
    if not rows:
        return after, []
    cursor = rows[-1].seq
    assert cursor is not None  # seq__gt left out the reminders not yet delivered (seq NULL)
    return cursor, [n.as_dict() for n in rows]


def mark_read(user_id: int, ids: Iterable[int] | None) -> int:
    """Mark the user's notifications read (``ids=None``: all of them); return the unread count."""
    notifications = Notification.objects.filter(recipient_id=user_id)
    if ids is not None:
        notifications = notifications.filter(pk__in=list(ids))
    notifications.mark_read()
    return unread_count(user_id)


# --- topics ------------------------------------------------------------------------


def topic_head(name: str) -> tuple[int, int]:
    """``(last_seq, pruned_seq)`` of a topic; (0, 0) for one nothing was published to."""
    return Topic.objects.filter(name=name).values_list("last_seq", "pruned_seq").first() or (0, 0)


def topic_snapshot(name: str, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """The head, and the newest ``limit`` messages up to it, oldest first.

    The head is read first: whatever commits after it is past the returned cursor.
    """
    cursor, _ = topic_head(name)
    newest = list(
        TopicMessage.objects.filter(topic_id=name, seq__lte=cursor).select_related("sender").order_by("-seq")[:limit]
    )
    return cursor, [message_dict(m) for m in reversed(newest)]


def topic_page_after(name: str, after: int, limit: int) -> tuple[int, list[dict[str, Any]], int, int]:
    """Up to ``limit`` messages after ``after``, oldest first, the cursor past them, and the
    topic's ``(last_seq, pruned_seq)``.

    The head is read *after* the messages: retention raises pruned_seq in the
    transaction that deletes, so if pruned_seq is still at or below ``after`` now,
    nothing after ``after`` had been deleted when the messages were read, and the
    page has no hole. The caller refuses the page (410) otherwise.
    """
    rows = list(
        TopicMessage.objects.filter(topic_id=name, seq__gt=after).select_related("sender").order_by("seq")[:limit]
    )
    last_seq, pruned_seq = topic_head(name)
    if not rows:
        return after, [], last_seq, pruned_seq
    return rows[-1].seq, [message_dict(m) for m in rows], last_seq, pruned_seq
