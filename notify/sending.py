"""Creating notifications and publishing them once their transaction commits."""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import DatabaseError, models, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from notify import announcements, grouping, metrics, pages, preferences
from notify.compiled import CompiledQuery
from notify.conf import conf
from notify.jsondepth import TooDeep, nests_deeper_than
from notify.models import CHUNK as MODEL_CHUNK
from notify.models import check_kind
from notify.sizes import TooLarge

if TYPE_CHECKING:
    from notify.models import Announcement, Broadcast, Notification

logger = logging.getLogger("notify")

# Rows inserted by one statement.
CHUNK = MODEL_CHUNK


def _unread_query(ids: list[int]) -> QuerySet[Any]:
    from notify.models import Notification

    return (
        Notification.objects.filter(recipient_id__in=ids).unread().values_list("recipient_id").annotate(n=Count("pk"))
    )


_unread_counts = CompiledQuery("notify.Notification", _unread_query)


def unread_counts(user_ids: Iterable[int]) -> dict[int, int]:
    """Each user's unread count, notifications and announcements: a query per 500 users
    (compiled once: notify.compiled), and the announcements' (notify.announcements)."""
    ids = sorted(set(user_ids))
    counts = dict.fromkeys(ids, 0)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        counts.update(_unread_counts(chunk))
        for uid, unread in announcements.unread_counts(chunk).items():
            counts[uid] += unread
    return counts


def publish_on_commit(notifications: Sequence[Notification], *, using: str) -> None:
    """Publish once the current transaction commits; never for a rolled-back one.

    Reminders not yet due (no seq) are left out: the dispatcher publishes them.
    """
    notifications = [n for n in notifications if n.seq is not None]
    if notifications:
        transaction.on_commit(partial(publish, list(notifications)), using=using)


def publish(notifications: Sequence[Notification]) -> None:
    """Wake the recipients' held polls. A failure is logged, never raised.

    The notifications are already committed: if Redis is down they are delivered by
    the next poll that checks the database, so the sender must not fail.
    """
    from notify.broker import get_broker

    try:
        unread: dict[int, int] = unread_counts(n.recipient_id for n in notifications)
    except DatabaseError:
        logger.warning("notify: could not count unread notifications; polls will ask the database")
        unread = {}
    messages = [
        (conf.channel_for_user(n.recipient_id), pages.message(n.seq, unread.get(n.recipient_id), n.as_dict()))
        for n in notifications
        if n.seq is not None  # always: publish_on_commit leaves out the unnumbered
    ]
    metrics.notifications_published(len(messages))
    try:
        get_broker().publish_many(messages)
    except Exception:
        logger.exception(
            "notify: could not publish %d notification(s); they are saved and will be delivered by the next poll",
            len(messages),
        )


def resolve_recipient_ids(recipients: Any) -> list[int]:
    """User ids from a user, an id, a queryset, or an iterable of users and ids."""
    User = get_user_model()
    if isinstance(recipients, models.QuerySet):
        if recipients.model is not User:
            raise TypeError(f"recipients must be users, got a queryset of {recipients.model.__name__}")
        return list(recipients.values_list("pk", flat=True))
    if isinstance(recipients, (User, int, str)):
        recipients = [recipients]
    if not isinstance(recipients, Iterable):
        raise TypeError(f"recipients must be a user, a user id or an iterable of them, got {recipients!r}")
    ids: list[int] = []
    bare_ids: set[int] = set()
    for recipient in recipients:
        if isinstance(recipient, User):
            ids.append(recipient.pk)
        elif isinstance(recipient, bool) or not isinstance(recipient, (int, str)):
            raise TypeError(f"recipients must be users or user ids, got {recipient!r}")
        else:
            try:
                ids.append(int(recipient))
            except ValueError:
                raise TypeError(f"recipients must be users or user ids, got {recipient!r}") from None
            bare_ids.add(ids[-1])
    if bare_ids:
        # Fail here, clearly, rather than with a foreign key error at commit.
        missing = bare_ids - set(User._default_manager.filter(pk__in=bare_ids).values_list("pk", flat=True))
        if missing:
            raise ValueError(f"No user with id {', '.join(map(str, sorted(missing)))}.")
    return ids


def check_content(title: Any, body: Any, url: Any, data: Any) -> None:
    """Refuse, with a clear ValueError, what some database would refuse at insert, and what
    is past notify's own limits (TooDeep, TooLarge: ValueErrors).

    PostgreSQL cannot store NUL characters in text or JSON and enforces lengths;
    SQLite accepts both. Checking here makes ``send`` behave the same everywhere and
    fail before anything is written, instead of with a DataError inside the caller's
    transaction. The size bounds what every poll answer carrying the notification
    carries: title, body, url and data (as compact JSON) together, in UTF-8.
    """
    from notify.models import Notification

    size = 0
    for name, value in (("title", title), ("body", body), ("url", url)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__}")
        if "\x00" in value:
            raise ValueError(f"{name} must not contain NUL (\\x00) characters")
        try:
            size += len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"{name} must be valid Unicode text (it contains a lone surrogate)") from None
        field = Notification._meta.get_field(name)
        max_length = field.max_length if isinstance(field, models.Field) else None
        if max_length is not None and len(value) > max_length:
            raise ValueError(f"{name} is {len(value)} characters long; at most {max_length} are accepted")
    if data is not None:
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict or None, got {type(data).__name__}")
        if nests_deeper_than(data, conf.MAX_JSON_DEPTH):
            raise TooDeep(f"data nests more than {conf.MAX_JSON_DEPTH} levels deep (NOTIFY['MAX_JSON_DEPTH'])")
        try:
            encoded = json.dumps(data, allow_nan=False)
            size += len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("data must be valid Unicode text (it contains a lone surrogate)") from None
        except ValueError as error:  # NaN or Infinity: not JSON, and PostgreSQL refuses them
            raise ValueError(f"data must be JSON without NaN or Infinity: {error}") from None
        except TypeError as error:
            raise TypeError(f"data must be JSON-serializable: {error}") from None
        if "\\u0000" in encoded:
            raise ValueError("data must not contain NUL (\\x00) characters")
    limit = conf.MAX_NOTIFICATION_BYTES
    if size > limit:
        raise TooLarge(
            f"the notification is {size} bytes (title, body, url and data as JSON, in UTF-8); "
            f"at most {limit} are accepted (NOTIFY['MAX_NOTIFICATION_BYTES'])"
        )


def checked(title: Any, body: Any, *, level: Any, kind: Any, url: Any, data: dict[str, Any] | None) -> dict[str, Any]:
    """A notification's content as model fields, once every check has passed (a clear
    ValueError or TypeError otherwise, before anything is written)."""
    from notify.models import Level

    if level not in Level.values:
        raise ValueError(f"Unsupported level {level!r}, must be one of: {', '.join(Level.values)}")
    check_content(title, body, url, data)
    check_kind(kind)
    return {"title": title, "body": body, "level": level, "kind": kind, "url": url, "data": data or {}}


def check_deliver_at(deliver_at: Any) -> datetime.datetime:
    """Refuse, with a clear error, what cannot be a delivery time."""
    if not isinstance(deliver_at, datetime.datetime):
        raise TypeError(f"deliver_at must be a timezone-aware datetime, got {type(deliver_at).__name__} {deliver_at!r}")
    if timezone.is_naive(deliver_at):
        raise ValueError(
            f"deliver_at must be timezone-aware, got the naive datetime {deliver_at.isoformat()}: "
            "use e.g. django.utils.timezone.now() + timedelta(minutes=5)"
        )
    return deliver_at


def send(
    recipients: Any,
    title: str,
    body: str = "",
    *,
    level: str = "info",
    kind: str = "",
    url: str = "",
    data: dict[str, Any] | None = None,
    deliver_at: datetime.datetime | None = None,
    group: str = "",
    actor: str | None = None,
    using: str = "default",
) -> list[Notification]:
    """Create one notification per recipient and publish them after commit.

    Works inside a transaction (published when it commits, never if it rolls back)
    and outside one. Each recipient gets it once, however often it is listed.

    Each recipient's preferences decide where it goes (notify.preferences): a recipient
    who wants it nowhere gets nothing, and is not in the returned list; one who wants
    it by email only gets it stored for the digest, never numbered in the page.

    ``deliver_at`` (a timezone-aware datetime) makes it a reminder: stored now,
    invisible to polls and unread counts until then, and delivered at that time by
    ``manage.py notify_scheduler`` (see notify.scheduling). A time now or past
    delivers it at once.

    ``group`` (with a ``kind``) and ``actor`` group it (notify.grouping, docs/grouping.md): a
    recipient with an unread one of the same kind and group gets one notification that counts
    both, and ``{actors}`` in the title names who acted ("alice and 3 others").
    """
    from notify.models import EmailStatus, Notification

    content = checked(title, body, level=level, kind=kind, url=url, data=data)
    if deliver_at is not None and check_deliver_at(deliver_at) <= timezone.now():
        deliver_at = None  # due already: an ordinary send
    content.update(grouping.fields(group, actor, kind=kind, deliver_at=deliver_at))
    user_ids = list(dict.fromkeys(resolve_recipient_ids(recipients)))
    if not user_ids:
        return []
    # Each recipient's preferences (notify.preferences): nothing stored for one who wants it
    # nowhere; for one who wants it by email only, stored unnumbered (never in a poll).
    wanted = preferences.deliveries(user_ids, level, kind, using=using)
    notifications = []
    for uid in user_ids:
        delivery = wanted[uid]
        if delivery.anywhere:
            email = EmailStatus.PENDING if delivery.email else EmailStatus.NONE
            notifications.append(
                Notification(recipient_id=uid, deliver_at=deliver_at, page=delivery.page, email_status=email, **content)
            )
    return Notification.objects.using(using).bulk_create(notifications, batch_size=CHUNK)


async def asend(
    recipients: Any,
    title: str,
    body: str = "",
    *,
    level: str = "info",
    kind: str = "",
    url: str = "",
    data: dict[str, Any] | None = None,
    deliver_at: datetime.datetime | None = None,
    group: str = "",
    actor: str | None = None,
    using: str = "default",
) -> list[Notification]:
    """The async twin of ``send``."""
    return await sync_to_async(send)(
        recipients,
        title,
        body,
        level=level,
        kind=kind,
        url=url,
        data=data,
        deliver_at=deliver_at,
        group=group,
        actor=actor,
        using=using,
    )


def announce(
    title: str,
    body: str = "",
    *,
    level: str = "info",
    kind: str = "",
    url: str = "",
    data: dict[str, Any] | None = None,
    using: str = "default",
) -> Announcement:
    """One notification to every user, stored once and published once (notify.announcements).

    Every inbox poll follows the announcements beside the user's own notifications: it
    arrives in the inbox answer as a notification (its id from ``ANNOUNCEMENT_IDS_FROM``
    up), counts in the unread count and is marked read like one. One row and one
    pub/sub message, however many users: each worker wakes its own held polls. Users
    created afterwards do not get it. Works inside a transaction as ``send`` does.
    """
    from django.db.models import F, Max

    from notify.models import Announcement, AnnouncementsHead

    content = checked(title, body, level=level, kind=kind, url=url, data=data)
    with transaction.atomic(using=using, savepoint=False):
        heads = AnnouncementsHead.objects.using(using)
        heads.bulk_create([AnnouncementsHead(id=1)], ignore_conflicts=True)
        # Locked until the transaction ends: announcements are numbered in commit order.
        seq = heads.select_for_update().filter(id=1).values_list("last_seq", flat=True).get() + 1
        heads.filter(id=1).update(last_seq=F("last_seq") + 1)
        users = get_user_model()._default_manager.using(using)
        last_user_id = users.aggregate(last=Max("pk"))["last"] or 0
        announcement = Announcement.objects.using(using).create(seq=seq, last_user_id=last_user_id, **content)
    transaction.on_commit(partial(publish_announcement, announcement), using=using)
    return announcement


def publish_announcement(announcement: Announcement) -> None:
    """Wake every held inbox poll, on every worker: one message. A failure is logged, never
    raised (the announcement is saved: the next poll that asks the database has it)."""
    from notify.broker import get_broker

    message = pages.announcement_message(announcement.seq, announcement.last_user_id, announcement.as_dict())
    metrics.notifications_published(1)
    try:
        get_broker().publish_many([(conf.announcements_channel, message)])
    except Exception:
        logger.exception("notify: could not publish announcement %d; it is saved", announcement.pk)


def send_broadcast(broadcast: Broadcast) -> int:
    """Send an admin broadcast; return to how many active users.

    To everyone (no groups): one announcement (``announce``), stored and published once.
    To groups: a notification per member (bulk insert, pipelined publish).
    """
    if broadcast.sent_at is not None:
        raise ValueError(f"Broadcast {broadcast.pk} was already sent at {broadcast.sent_at}.")
    content: dict[str, Any] = {"level": broadcast.level, "url": broadcast.url, "data": {"broadcast": broadcast.pk}}
    with transaction.atomic():
        if broadcast.groups.exists():
            count = len(send(broadcast.recipients(), broadcast.title, broadcast.body, **content))
        else:
            announce(broadcast.title, broadcast.body, **content)
            count = broadcast.recipients().count()
        broadcast.sent_at = timezone.now()
        broadcast.recipient_count = count
        broadcast.save(update_fields=["sent_at", "recipient_count"])
    return broadcast.recipient_count
