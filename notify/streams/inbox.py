"""The user's inbox: their own notifications, numbered 1, 2, 3… in commit order (notify.sending),
and the announcements every user gets, numbered in a stream of their own (notify.announcements).

The two are read side by side and merged by creation time: a page takes the oldest of
each in turn, so each keeps its own order and the cursor (``InboxCursor``: the last of
each the client has) never skips or repeats one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from django.db import transaction

from notify import announcements, batching, db, pages
from notify.compiled import CompiledQuery
from notify.conf import conf
from notify.cursor import INBOX, InboxCursor
from notify.models import Announcement, Inbox, Notification
from notify.sending import unread_counts
from notify.streams.base import Result, Stream, StreamError

# --- queries (synchronous: notify.db's threads) -------------------------------------


def notifications_head(user_id: int) -> int:
    """The seq of the user's newest committed notification (0 for none)."""
    return Inbox.objects.filter(user_id=user_id).values_list("last_seq", flat=True).first() or 0


def head(user_id: int) -> InboxCursor:
    """The user's newest committed notification and the newest announcement."""
    return InboxCursor(notifications_head(user_id), announcements.head())


def unread_count(user_id: int) -> int:
    own = Notification.objects.filter(recipient_id=user_id).unread().count()
    return own + announcements.unread_counts([user_id]).get(user_id, 0)


Item = Notification | Announcement


def _item_json(item: Item, read: set[int]) -> bytes:
    if isinstance(item, Announcement):
        return pages.notification_json(item.as_dict(read=item.pk in read))
    return pages.notification_json(item.as_dict())


def _merged(own: Sequence[Item], announced: Sequence[Item], limit: int, *, newest_first: bool = False) -> list[Item]:
    """The first ``limit`` of two runs, each in its own order, merged by creation time: a
    prefix of each (ties: the user's own first)."""
    merged: list[Item] = []
    i = j = 0
    while len(merged) < limit and (i < len(own) or j < len(announced)):
        if j == len(announced):
            take_own = True
        elif i == len(own):
            take_own = False
        else:
            a: datetime = own[i].created_at
            b: datetime = announced[j].created_at
            take_own = a >= b if newest_first else a <= b
        if take_own:
            merged.append(own[i])
            i += 1
        else:
            merged.append(announced[j])
            j += 1
    return merged


def newest_unread(user_id: int, position: InboxCursor, limit: int) -> list[bytes]:
    """The newest ``limit`` unread notifications and announcements up to ``position`` as JSON,
    oldest first; no more than fit in one answer (MAX_ANSWER_BYTES: the newest are kept,
    as ``limit`` keeps them)."""
    own = list(
        Notification.objects.filter(recipient_id=user_id, seq__lte=position.notifications)
        .unread()
        .order_by("-seq")[:limit]
    )
    announced = announcements.newest_unread(user_id, position.announcements, limit) if position.announcements else []
    newest = _merged(own, announced, limit, newest_first=True)
    kept = pages.within_budget((_item_json(item, set()) for item in newest), conf.MAX_ANSWER_BYTES, len)
    return kept[::-1]


def unread_snapshot(user_id: int, limit: int) -> tuple[InboxCursor, list[bytes], int]:
    """The head, the newest ``limit`` unread up to it (``newest_unread``), and the unread count.

    The head is read first: whatever commits after it is past the returned cursor
    and so comes with the next poll.
    """
    position = head(user_id)
    return position, newest_unread(user_id, position, limit), unread_count(user_id)


def page_after(
    user_id: int, after: InboxCursor, limit: int, newest: InboxCursor | None = None
) -> tuple[InboxCursor, list[bytes]]:
    """What follows ``after`` as JSON, oldest first, up to ``limit`` and no more than fit in one
    answer (MAX_ANSWER_BYTES), and the cursor past the last of them: the next poll goes on
    from there.

    The heads are read first (``newest``, if the caller has): when the page holds every
    notification, or every announcement of the user's, up to its head, the cursor moves to
    that head, past the numbers no row of theirs has (announcements made before the user
    was, notifications deleted) so that the next poll finds nothing behind it.
    """
    if newest is None:
        newest = head(user_id)
    announced_head = newest.announcements
    own = list(Notification.objects.filter(recipient_id=user_id, seq__gt=after.notifications).order_by("seq")[:limit])
    announced: list[Announcement] = []
    if announced_head > after.announcements:
        announced = announcements.after(user_id, after.announcements, announced_head, limit)
    read = announcements.read_ids(user_id, announced) if announced else set()
    merged = _merged(own, announced, limit)
    items = pages.within_budget((_item_json(item, read) for item in merged), conf.MAX_ANSWER_BYTES, len)
    taken = merged[: len(items)]
    own_taken = [item.seq for item in taken if isinstance(item, Notification)]
    announced_taken = [item.seq for item in taken if isinstance(item, Announcement)]
    notifications = own_taken[-1] if own_taken else after.notifications
    assert notifications is not None  # seq__gt left out the reminders not yet delivered (seq NULL)
    if len(own_taken) == len(own) < limit:
        notifications = max(notifications, newest.notifications)  # every one up to the head is answered
    if len(announced_taken) == len(announced) and len(announced) < limit:
        last_announced = max(announced_head, after.announcements)  # every one up to the head is answered
    else:
        last_announced = announced_taken[-1] if announced_taken else after.announcements
    return InboxCursor(notifications, last_announced), items


def mark_read(user_id: int, ids: Iterable[int] | None) -> int:
    """Mark the user's notifications and announcements read (``ids=None``: all of them); return
    the unread count."""
    with transaction.atomic():
        notifications = Notification.objects.filter(recipient_id=user_id)
        if ids is None:
            notifications.mark_read()
            announcements.mark_all_read(user_id)
        else:
            ids = list(ids)
            notifications.filter(pk__in=ids).mark_read()
            announcements.mark_read(user_id, ids)
    return unread_count(user_id)


_heads = CompiledQuery(
    "notify.Inbox", lambda ids: Inbox.objects.filter(user_id__in=ids).values_list("user_id", "last_seq")
)


def heads(user_ids: list[int]) -> dict[int, InboxCursor]:
    """The head of each user's inbox: their notifications' (one query for all) and the announcements'."""
    announced = announcements.head()
    own: Mapping[int, int] = dict(_heads(user_ids))
    return {uid: InboxCursor(own.get(uid, 0), announced) for uid in user_ids}


# --- coalesced with other polls' (notify.batching) ------------------------------------


async def batched_head(user_id: int) -> InboxCursor:
    """The head of the user's inbox, read with other polls' in one trip."""
    return await batching.ask("heads", heads, InboxCursor(0), user_id)


async def batched_unread_count(user_id: int) -> int:
    """The user's unread count, read with other polls' in one trip."""
    return await batching.ask("unread", unread_counts, 0, user_id)


# --- the stream -----------------------------------------------------------------------


class InboxStream(Stream):
    name = INBOX

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.channel = conf.channel_for_user(user_id)
        self.channels = (self.channel, conf.announcements_channel)

    def snapshot(self, limit: int) -> Result:
        return Result(*unread_snapshot(self.user_id, limit))

    def look(self, after: InboxCursor, limit: int) -> Result:
        # The head first: most polls have nothing new, and then two primary-key
        # look-ups are the whole look. The poll is subscribed already, so whatever
        # commits after the head was read wakes it.
        newest = head(self.user_id)
        if after.ahead_of(newest):
            raise self.ahead()
        if not after.behind(newest):
            return Result(after)
        position, items = page_after(self.user_id, after, limit, newest)
        # Counted in the same trip: a page with news is answered with its count.
        return Result(position, items, unread_count(self.user_id) if items else None)

    def ahead_of(self, after: InboxCursor, head: InboxCursor) -> bool:
        return after.ahead_of(head)

    def behind(self, after: InboxCursor, head: InboxCursor) -> bool:
        return after.behind(head)

    async def batched_head(self) -> InboxCursor:
        return await batched_head(self.user_id)

    async def batched_snapshot(self, limit: int) -> Result:
        # The head first: whatever commits after it is past the returned cursor.
        position = await batched_head(self.user_id)
        unread = await batched_unread_count(self.user_id)
        items = await db.read(newest_unread, self.user_id, position, limit) if unread else []
        return Result(position, items, unread)

    def ahead(self) -> StreamError:
        return StreamError(
            400,
            "invalid_cursor",
            "The inbox cursor is ahead of this user's newest notification: it was not issued for this user. "
            "Poll without it to get a fresh one.",
            INBOX,
        )

    def from_messages(
        self, heard: Mapping[str, Sequence[bytes | str]], after: InboxCursor, limit: int
    ) -> Result | None:
        own, announced = heard.get(self.channel, ()), heard.get(conf.announcements_channel, ())
        if own and announced:
            return None  # both at once: the database merges them
        if own:
            picked = pages.run_from_messages(own, after.notifications, limit, conf.MAX_ANSWER_BYTES)
            if not picked or picked[-1][1] is None:
                return None  # nothing that continues the cursor, or no unread count to answer with
            position = InboxCursor(picked[-1][0], after.announcements)
            return Result(position, [body for _, _, body in picked], picked[-1][1])
        run = pages.run_from_messages(announced, after.announcements, limit, conf.MAX_ANSWER_BYTES)
        if not run:
            return None
        # The second field of an announcement's message is the last user id that gets it;
        # the unread count is asked for in finish(), with other polls'.
        items = [body for _, last_user_id, body in run if last_user_id is not None and last_user_id >= self.user_id]
        return Result(InboxCursor(after.notifications, run[-1][0]), items)

    async def finish(self, result: Result) -> None:
        if result.unread is None:
            result.unread = await batched_unread_count(self.user_id)

    def body(self, result: Result) -> bytes:
        assert result.unread is not None  # finish() has run
        assert isinstance(result.cursor, InboxCursor)
        return pages.inbox_body(result.cursor, result.items, result.unread)
