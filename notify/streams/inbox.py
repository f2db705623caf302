"""The user's inbox: their notifications, numbered 1, 2, 3… in commit order (notify.sending)."""

from __future__ import annotations

from collections.abc import Iterable

from notify import batching, db, pages
from notify.compiled import CompiledQuery
from notify.conf import conf
from notify.models import Inbox, Notification
from notify.sending import unread_counts
from notify.streams.base import Result, Stream, StreamError
from notify.topics import INBOX

# --- queries (synchronous: notify.db's threads) -------------------------------------


def head(user_id: int) -> int:
    """The seq of the user's newest committed notification (0 for none)."""
    return Inbox.objects.filter(user_id=user_id).values_list("last_seq", flat=True).first() or 0


def unread_count(user_id: int) -> int:
    return Notification.objects.filter(recipient_id=user_id).unread().count()


def newest_unread(user_id: int, head: int, limit: int) -> list[bytes]:
    """The newest ``limit`` unread notifications up to ``head`` as JSON, oldest first; no more
    than fit in one answer (MAX_ANSWER_BYTES: the newest are kept, as ``limit`` keeps them)."""
    newest = Notification.objects.filter(recipient_id=user_id, seq__lte=head).unread().order_by("-seq")[:limit]
    kept = pages.within_budget((pages.notification_json(n.as_dict()) for n in newest), conf.MAX_ANSWER_BYTES, len)
    return kept[::-1]


def unread_snapshot(user_id: int, limit: int) -> tuple[int, list[bytes], int]:
    """The head, the newest ``limit`` unread notifications up to it (``newest_unread``), and the unread count.

    The head is read first: whatever commits after it is past the returned cursor
    and so comes with the next poll.
    """
    cursor = head(user_id)
    return cursor, newest_unread(user_id, cursor, limit), unread_count(user_id)


def page_after(user_id: int, after: int, limit: int) -> tuple[int, list[bytes]]:
    """The notifications after ``after`` as JSON, oldest first, up to ``limit`` and no more than
    fit in one answer (MAX_ANSWER_BYTES), and the cursor past the last of them: the next poll
    goes on from there."""
    rows = list(Notification.objects.filter(recipient_id=user_id, seq__gt=after).order_by("seq")[:limit])
    items = pages.within_budget((pages.notification_json(n.as_dict()) for n in rows), conf.MAX_ANSWER_BYTES, len)
    if not items:
        return after, []
    cursor = rows[len(items) - 1].seq
    assert cursor is not None  # seq__gt left out the reminders not yet delivered (seq NULL)
    return cursor, items


def mark_read(user_id: int, ids: Iterable[int] | None) -> int:
    """Mark the user's notifications read (``ids=None``: all of them); return the unread count."""
    notifications = Notification.objects.filter(recipient_id=user_id)
    if ids is not None:
        notifications = notifications.filter(pk__in=list(ids))
    notifications.mark_read()
    return unread_count(user_id)


_heads = CompiledQuery(
    "notify.Inbox", lambda ids: Inbox.objects.filter(user_id__in=ids).values_list("user_id", "last_seq")
)


def heads(user_ids: list[int]) -> dict[int, int]:
    """The head of each user's stream (users without an inbox are left out: 0)."""
    return dict(_heads(user_ids))


# --- coalesced with other polls' (notify.batching) ------------------------------------


async def batched_head(user_id: int) -> int:
    """The head of the user's stream, read with other polls' in one query."""
    return await batching.ask("heads", heads, 0, user_id)


async def batched_unread_count(user_id: int) -> int:
    """The user's unread count, read with other polls' in one query."""
    return await batching.ask("unread", unread_counts, 0, user_id)


# --- the stream -----------------------------------------------------------------------


class InboxStream(Stream):
    name = INBOX

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.channel = conf.channel_for_user(user_id)

    def snapshot(self, limit: int) -> Result:
        return Result(*unread_snapshot(self.user_id, limit))

    def look(self, after: int, limit: int) -> Result:
        # The head first: most polls have nothing new, and then one primary-key
        # look-up is the whole look. The poll is subscribed already, so whatever
        # commits after the head was read wakes it.
        newest = head(self.user_id)
        if after >= newest:
            if after > newest:
                raise self.ahead()
            return Result(after)
        cursor, notifications = page_after(self.user_id, after, limit)
        # Counted in the same trip: a page with news is answered with its count.
        return Result(cursor, notifications, unread_count(self.user_id))

    async def batched_head(self) -> int:
        return await batched_head(self.user_id)

    async def batched_snapshot(self, limit: int) -> Result:
        # The head first: whatever commits after it is past the returned cursor.
        cursor = await batched_head(self.user_id)
        unread = await batched_unread_count(self.user_id)
        notifications = await db.read(newest_unread, self.user_id, cursor, limit) if unread else []
        return Result(cursor, notifications, unread)

    def ahead(self) -> StreamError:
        return StreamError(
            400,
            "invalid_cursor",
            "The inbox cursor is ahead of this user's newest notification: it was not issued for this user. "
            "Poll without it to get a fresh one.",
            INBOX,
        )

    def from_messages(self, messages: Iterable[bytes | str], after: int, limit: int) -> Result | None:
        picked = pages.run_from_messages(messages, after, limit, conf.MAX_ANSWER_BYTES)
        if not picked or picked[-1][1] is None:
            return None  # nothing that continues the cursor, or no unread count to answer with
        return Result(picked[-1][0], [body for _, _, body in picked], picked[-1][1])

    async def finish(self, result: Result) -> None:
        if result.unread is None:
            result.unread = await batched_unread_count(self.user_id)

    def body(self, result: Result) -> bytes:
        assert result.unread is not None  # finish() has run
        return pages.inbox_body(result.cursor, result.items, result.unread)
