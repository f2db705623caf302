"""The announcements stream: notifications to every user, stored once, read per user.

``notify.announce`` (notify.sending) numbers an announcement in one stream that every
inbox poll follows beside the user's own notifications (notify.streams.inbox), and
publishes it once, on one channel: a broadcast to everyone costs one row and one
pub/sub message however many users there are, and each worker wakes its own held
polls. This module holds the queries; they run in notify.db's threads.

Who gets one: the users whose id is at most its ``last_user_id`` (the highest when it
was made), so a user created afterwards does not. Read state: ``Inbox.announcements_read``
says "every announcement up to here is read" (moved by "mark all read"); one read
alone above it is an ``AnnouncementRead`` row. Those rows always lie above the mark
(``mark_all_read`` deletes the ones it passes), so a user's unread count is the
announcements they get above the mark minus their rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.models import QuerySet

from notify.compiled import CompiledQuery
from notify.models import (
    ANNOUNCEMENT_IDS_FROM,
    Announcement,
    AnnouncementRead,
    AnnouncementsHead,
    Inbox,
)

# Read by every batch of inbox heads and unread counts: compiled once (notify.compiled), as the
# ORM's query building cost 7-11 % of a worker's CPU in the steady phase of a 10,000-poll run.
_head = CompiledQuery(
    "notify.AnnouncementsHead", lambda ids: AnnouncementsHead.objects.filter(id__in=ids).values_list("last_seq")
)


def head() -> int:
    """The seq of the newest committed announcement (0 for none)."""
    rows = _head([1])
    return int(rows[0][0]) if rows else 0


def read_mark(user_id: int) -> int:
    return Inbox.objects.filter(user_id=user_id).values_list("announcements_read", flat=True).first() or 0


def for_user(user_id: int) -> QuerySet[Announcement]:
    return Announcement.objects.filter(last_user_id__gte=user_id)


def after(user_id: int, seq: int, up_to: int, limit: int) -> list[Announcement]:
    """The user's announcements after ``seq`` up to ``up_to``, oldest first, at most ``limit``."""
    return list(for_user(user_id).filter(seq__gt=seq, seq__lte=up_to).order_by("seq")[:limit])


def read_ids(user_id: int, announcements: Sequence[Announcement]) -> set[int]:
    """The primary keys of ``announcements`` the user has read."""
    mark = read_mark(user_id)
    above = [a.pk for a in announcements if a.seq > mark]
    read = {a.pk for a in announcements if a.seq <= mark}
    if above:
        read.update(
            AnnouncementRead.objects.filter(user_id=user_id, announcement_id__in=above).values_list(
                "announcement_id", flat=True
            )
        )
    return read


def newest_unread(user_id: int, up_to: int, limit: int) -> list[Announcement]:
    """The user's newest ``limit`` unread announcements up to ``up_to``, newest first."""
    return list(
        for_user(user_id)
        .filter(seq__gt=read_mark(user_id), seq__lte=up_to)
        .exclude(reads__user_id=user_id)
        .order_by("-seq")[:limit]
    )


def unread_counts(user_ids: Sequence[int]) -> dict[int, int]:
    """Each user's unread announcements (users without any are left out). Small queries for
    any number of users (the announcements above the lowest mark, the users' marks and
    rows), one when nothing was ever announced."""
    if not user_ids or not head():
        return {}
    marks = dict(Inbox.objects.filter(user_id__in=user_ids).values_list("user_id", "announcements_read"))
    lowest = min(marks.get(uid, 0) for uid in user_ids)
    announced = list(Announcement.objects.filter(seq__gt=lowest).values_list("seq", "last_user_id"))
    if not announced:
        return {}
    read: dict[int, int] = {}
    for uid, seq in AnnouncementRead.objects.filter(user_id__in=user_ids, announcement__seq__gt=lowest).values_list(
        "user_id", "announcement__seq"
    ):
        if seq > marks.get(uid, 0):  # a row the mark has passed is not counted twice
            read[uid] = read.get(uid, 0) + 1
    counts = {}
    for uid in user_ids:
        mark = marks.get(uid, 0)
        got = sum(1 for seq, last_user_id in announced if seq > mark and last_user_id >= uid)
        if got:
            counts[uid] = got - read.get(uid, 0)
    return counts


def mark_read(user_id: int, public_ids: Iterable[int]) -> None:
    """Mark the user's announcements with these ids read (ids of notifications are ignored)."""
    pks = [i - ANNOUNCEMENT_IDS_FROM for i in public_ids if i > ANNOUNCEMENT_IDS_FROM]
    if not pks:
        return
    mark = read_mark(user_id)
    mine = for_user(user_id).filter(pk__in=pks, seq__gt=mark).values_list("pk", flat=True)
    AnnouncementRead.objects.bulk_create(
        [AnnouncementRead(user_id=user_id, announcement_id=pk) for pk in mine], ignore_conflicts=True
    )


def mark_all_read(user_id: int) -> None:
    """Every announcement the user has is read: the mark moves to the head, the rows it passes go."""
    newest = head()
    if not newest:
        return
    Inbox.objects.bulk_create([Inbox(user_id=user_id)], ignore_conflicts=True)
    Inbox.objects.filter(user_id=user_id, announcements_read__lt=newest).update(announcements_read=newest)
    AnnouncementRead.objects.filter(user_id=user_id, announcement__seq__lte=newest).delete()
