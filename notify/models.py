"""Notifications, the per-user stream head that orders them, and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models, router, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone


class FrozenFieldChanged(ValueError):
    """A save() that would change a field fixed when the row was created (see ``_refuse_frozen_changes``)."""


def _refuse_frozen_changes(instance: models.Model, fields: tuple[str, ...], kwargs: dict[str, Any]) -> None:
    """Raise FrozenFieldChanged if saving ``instance`` would change one of ``fields`` of its stored row.

    Compared with the row as stored (one primary-key read), not as loaded: a stale copy
    must not undo what was written since. Only saves of an existing row that write one
    of the fields pay the read. ``QuerySet.update`` and ``bulk_update`` bypass ``save()``
    and so this check: they are the escape hatch of notify's own code (the dispatcher
    numbers due reminders with ``bulk_update``), not for editing rows by hand.
    """
    update_fields = kwargs.get("update_fields")
    written = [name for name in fields if update_fields is None or name in update_fields]
    if instance._state.adding or instance.pk is None or not written:
        return
    attnames = [_attname(instance, name) for name in written]
    using = kwargs.get("using") or instance._state.db or router.db_for_write(type(instance), instance=instance)
    stored = type(instance)._base_manager.using(using).filter(pk=instance.pk).values_list(*attnames).first()
    if stored is None:
        return  # the row is gone; Django's save inserts it anew
    for name, attname, before in zip(written, attnames, stored, strict=True):
        after = getattr(instance, attname)
        if after != before:
            raise FrozenFieldChanged(
                f"{type(instance).__name__} {instance.pk}: '{name}' cannot be changed after creation "
                f"(stored {before!r}, this save would write {after!r})."
            )


def _attname(instance: models.Model, name: str) -> str:
    field = instance._meta.get_field(name)
    assert isinstance(field, models.Field), name  # a concrete column, as FROZEN_FIELDS are
    return field.attname


class Level(models.TextChoices):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


class Inbox(models.Model):
    """The head of one user's notification stream.

    ``last_seq`` is the sequence number of the user's newest notification. Sending
    locks this row until its transaction ends, so a user's sequence numbers are
    handed out in commit order: a poll cursor never moves past a number that has
    yet to commit (see docs/delivery.md).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="notify_inbox",
    )
    last_seq = models.PositiveBigIntegerField(default=0)
    # Every announcement up to this seq is read by this user (``{"all": true}``); the ones
    # above it read one by one have an AnnouncementRead row each.
    announcements_read = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "inboxes"

    def __str__(self) -> str:
        return f"inbox of user {self.user_id} at {self.last_seq}"


# A notification's kind (``notify.send(..., kind="billing.invoice")``): what it is about,
# set by the sender, for filters and per-kind preferences. Slug-like, so that it is the
# same in a URL, a filter and a settings key; lower case, so that "Billing" and "billing"
# are never two kinds. Blank: no kind.
KIND_MAX_LENGTH = 50
KIND_PATTERN = re.compile(rf"\A[a-z0-9][a-z0-9._-]{{0,{KIND_MAX_LENGTH - 1}}}\Z")
KIND_RULE = (
    f"1 to {KIND_MAX_LENGTH} characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit "
    "(e.g. 'billing.invoice')"
)


def check_kind(kind: Any) -> str:
    """Refuse, with a clear error, what cannot be a notification's kind (KIND_RULE)."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a string, got {type(kind).__name__} {kind!r}")
    if kind and not KIND_PATTERN.match(kind):
        raise ValueError(f"Unsupported kind {kind[:60]!r}: a kind is {KIND_RULE}, or '' for none")
    return kind


def check_timezone(name: Any) -> str:
    """Refuse, with a clear error, what is not an IANA time zone name (or '' for the site's)."""
    if not isinstance(name, str):
        raise TypeError(f"timezone must be a string, got {type(name).__name__}")
    if name:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"Unknown time zone {name[:60]!r}: an IANA name such as 'Europe/Paris', or ''") from None
    return name


# What a notification is about, for grouping (``notify.send(..., group="post:42")``).
GROUP_MAX_LENGTH = 200


class EmailStatus(models.TextChoices):
    """Where a notification stands with email (notify.digests)."""

    NONE = "", "not emailed"  # the recipient's preferences want no email of it (or digests are off)
    PENDING = "pending", "to be emailed"  # in the next digest, if still unread by then
    SENT = "sent", "emailed"
    SKIPPED = "skipped", "read before it was due"


# Rows locked or updated by one statement; well under SQLite's variable limit.
CHUNK = 500


def assign_seqs(notifications: Sequence[Notification], *, using: str) -> None:
    """Give each unsaved notification the next number in its recipient's stream.

    Must run inside the transaction that saves them. The recipients' Inbox rows are
    locked in ascending user id order (so two concurrent sends cannot deadlock) and
    stay locked until that transaction ends: a second sender to the same user waits,
    and so numbers are assigned in commit order. On SQLite the database-wide write
    lock gives the same order.
    """
    if not notifications:
        return
    counts = Counter(n.recipient_id for n in notifications)
    user_ids = sorted(counts)
    inboxes = Inbox.objects.using(using)
    heads: dict[int, int] = {}
    for start in range(0, len(user_ids), CHUNK):
        chunk = user_ids[start : start + CHUNK]
        inboxes.bulk_create([Inbox(user_id=uid) for uid in chunk], ignore_conflicts=True)
        heads.update(
            inboxes.select_for_update().filter(user_id__in=chunk).order_by("user_id").values_list("user_id", "last_seq")
        )
    by_count: dict[int, list[int]] = defaultdict(list)
    for uid, count in counts.items():
        by_count[count].append(uid)
    for count, uids in by_count.items():
        for start in range(0, len(uids), CHUNK):
            inboxes.filter(user_id__in=uids[start : start + CHUNK]).update(last_seq=F("last_seq") + count)
    for notification in notifications:
        heads[notification.recipient_id] += 1
        notification.seq = heads[notification.recipient_id]


# Sent inside the transaction that inserts notifications, once ``assign_seqs`` has numbered
# them under their recipients' stream-head locks, before the insert: notify.receivers folds
# each recipient's open group into a grouped one there (notify.grouping). A signal, so that
# the model does not import what builds on it.
notifications_numbered = Signal()


def _collapse_groups(notifications: Sequence[Notification], *, using: str) -> None:
    if any(n.group for n in notifications):
        notifications_numbered.send(sender=Notification, notifications=notifications, using=using)


# Sent by ``Notification.objects.bulk_create`` (which sends no post_save) with the
# created rows: notify.receivers publishes them once the transaction commits.
notifications_created = Signal()


class NotificationQuerySet(models.QuerySet["Notification"]):
    def delivered(self) -> NotificationQuerySet:
        """Leave out reminders not yet due: polls and counts never see those."""
        return self.filter(seq__isnull=False)

    def unread(self) -> NotificationQuerySet:
        return self.delivered().filter(read_at__isnull=True)

    def mark_read(self) -> int:
        return self.unread().update(read_at=timezone.now())

    def bulk_create(self, objs: Iterable[Notification], *args: Any, **kwargs: Any) -> list[Notification]:
        """Create many notifications at once, numbered and published after commit.

        Django's ``bulk_create`` sends no ``post_save``, so this does what the
        signal does for single saves: number the rows in each recipient's stream
        and publish them once the transaction commits.
        """
        objs = list(objs)
        using = self.db
        with transaction.atomic(using=using, savepoint=False):
            assign_seqs([obj for obj in objs if obj.seq is None and obj.page and not obj.is_scheduled], using=using)
            _collapse_groups(objs, using=using)
            created = super().bulk_create(objs, *args, **kwargs)
        notifications_created.send(sender=Notification, notifications=created, using=using)
        return created


class Notification(models.Model):
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    # Position in the recipient's stream: 1, 2, 3... in commit order. The cursor.
    # None while the notification is a reminder not yet due (``deliver_at``): polls
    # only ever see numbered rows, and the dispatcher numbers it when it is due.
    seq = models.PositiveBigIntegerField(null=True, editable=False)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    kind = models.CharField(
        max_length=KIND_MAX_LENGTH,
        blank=True,
        default="",
        validators=[RegexValidator(KIND_PATTERN, f"A kind is {KIND_RULE}.")],
        help_text="What it is about, set by the sender (e.g. billing.invoice); blank for none.",
    )
    url = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)
    # A reminder: when to deliver it. None, or a time already past when sent,
    # means at once.
    deliver_at = models.DateTimeField(null=True, blank=True)
    # Shown in the page: numbered in the recipient's stream (when due). False: the
    # recipient's preferences (notify.preferences) want it by email only, so it is stored
    # for the digest but never numbered: no poll, unread count or history page sees it.
    page = models.BooleanField(default=True, editable=False)
    # Whether it is to be emailed in a digest (notify.digests), and where that stands.
    email_status = models.CharField(max_length=8, choices=EmailStatus.choices, default=EmailStatus.NONE, blank=True)
    # Grouping (notify.grouping): what the notification is about ("post:42"), blank for
    # none. A send of the same kind and group to a recipient who has it unread replaces
    # it with one that counts both ("alice and 3 others commented on ...").
    group = models.CharField(max_length=GROUP_MAX_LENGTH, blank=True, default="", editable=False)
    group_count = models.PositiveIntegerField(default=1, editable=False)
    group_actors = models.JSONField(default=list, blank=True, editable=False)
    # The id of the notification its group started with (None: this one). Every notification of
    # one group has the same, so a client tells the one it replaces from an earlier group of the
    # same key still listed (one read, or left unread past GROUP_WINDOW): docs/grouping.md.
    group_first = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    # The digest (notify.digests) it was put in, once a scheduler claimed it for one; its
    # email_status stays "pending" until that digest is sent.
    digest = models.ForeignKey(
        "Digest", null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications", editable=False
    )

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["recipient", "seq"]
        constraints = [
            # Also the index of the poll query: recipient = ? AND seq > ? ORDER BY seq.
            models.UniqueConstraint(fields=["recipient", "seq"], name="notify_recipient_seq"),
        ]
        indexes = [
            models.Index(
                fields=["recipient", "seq"],
                condition=models.Q(read_at__isnull=True),
                name="notify_unread",
            ),
            # The history's kind filter: recipient = ? AND kind IN (...) AND seq < ? ORDER BY seq DESC.
            models.Index(fields=["recipient", "kind", "seq"], name="notify_kind"),
            # The digest's query: what waits to be emailed, oldest first.
            models.Index(
                fields=["created_at"],
                condition=models.Q(email_status="pending"),
                name="notify_email_pending",
            ),
            # Grouping's look-up: recipient = ? AND group = ? AND unread.
            models.Index(
                fields=["recipient", "kind", "group"],
                condition=models.Q(read_at__isnull=True) & ~models.Q(group=""),
                name="notify_open_group",
            ),
            # The dispatcher's query: reminders not yet delivered, by due time.
            models.Index(
                fields=["deliver_at"],
                condition=models.Q(seq__isnull=True),
                name="notify_due",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    # Fixed at creation: a notification moved to another recipient, or renumbered,
    # collides with a seq its stream hands out later and is seen in neither stream.
    FROZEN_FIELDS = ("recipient", "seq")

    def save(self, *args: Any, **kwargs: Any) -> None:
        _refuse_frozen_changes(self, self.FROZEN_FIELDS, kwargs)
        # Only a new row is numbered here. An undelivered reminder that is edited
        # (say in the admin) keeps seq None even when it is already due: numbering
        # is the dispatcher's, which publishes it; numbering it here would race it.
        # An email-only notification (page False) is never numbered.
        if self.seq is not None or not self.page or self.is_scheduled or not self._state.adding:
            super().save(*args, **kwargs)
            return
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        # The seq lock is held until the surrounding transaction commits, so the
        # row must be saved in that same transaction.
        with transaction.atomic(using=using, savepoint=False):
            assign_seqs([self], using=using)
            _collapse_groups([self], using=using)
            super().save(*args, **kwargs)

    @property
    def read(self) -> bool:
        return self.read_at is not None

    @property
    def is_scheduled(self) -> bool:
        """A reminder waiting for its time: stored, not numbered, invisible to polls."""
        return self.seq is None and self.deliver_at is not None and self.deliver_at > timezone.now()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "title": self.title,
            "body": self.body,
            "level": self.level,
            "kind": self.kind,
            "url": self.url,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
            "read": self.read_at is not None,
            # Grouping (notify.grouping, docs/grouping.md): a client drops any earlier item of the
            # same kind and group key when this one arrives.
            "group": (
                {
                    "key": self.group,
                    "count": self.group_count,
                    "actors": list(self.group_actors),
                    "first_id": self.group_first or self.pk,
                }
                if self.group
                else None
            ),
        }


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A bearer token for clients without a session: ``ntf_<key>_<secret>``.

    Only a SHA-256 hash of the secret is stored. The key finds the row; the secret
    is then compared in constant time, so a look-up leaks nothing about it.
    """

    PREFIX = "ntf"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notify_tokens",
    )
    name = models.CharField(max_length=100, blank=True)
    key = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.PREFIX}_{self.key}_… ({self.user})"

    # A token is an identity: re-owning one hands its holder another user's streams.
    FROZEN_FIELDS = ("user",)

    def save(self, *args: Any, **kwargs: Any) -> None:
        _refuse_frozen_changes(self, self.FROZEN_FIELDS, kwargs)
        super().save(*args, **kwargs)

    @classmethod
    def issue(cls, user: Any, name: str = "") -> tuple[ApiToken, str]:
        """Create a token for ``user``; return it and the only copy of its plain text."""
        key = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, key=key, secret_hash=_hash_secret(secret))
        return token, f"{cls.PREFIX}_{key}_{secret}"

    @staticmethod
    def split(raw: str) -> tuple[str, str] | None:
        """``(key, secret)`` of a presented token, or None if it has not our shape."""
        prefix, _, rest = raw.partition("_")
        key, _, secret = rest.partition("_")
        if prefix != ApiToken.PREFIX or len(key) != 16 or not secret or len(secret) > 100:
            return None
        return key, secret

    @staticmethod
    def secret_matches(secret: str, secret_hash: str) -> bool:
        return hmac.compare_digest(_hash_secret(secret), secret_hash)

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class Broadcast(models.Model):
    """An announcement to all active users, or to the members of chosen groups.

    Sent once, when created (``send()``); the record keeps when and to how many.
    """

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    url = models.CharField(max_length=500, blank=True)
    groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        help_text="Leave empty to send to every active user.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    recipient_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title

    def recipients(self) -> models.QuerySet[Any]:
        from django.contrib.auth import get_user_model

        users = get_user_model()._default_manager.filter(is_active=True)
        if self.pk and self.groups.exists():
            users = users.filter(groups__in=self.groups.all()).distinct()
        return users


class Topic(models.Model):
    """The head of a named stream besides the per-user ones: a chat room, a lobby.

    Like ``Inbox``: ``last_seq`` is locked while a message is numbered, so a
    topic's sequence numbers are handed out in commit order. ``pruned_seq`` is
    the highest seq retention has deleted: a cursor below it has missed messages.
    """

    name = models.CharField(max_length=100, primary_key=True)
    last_seq = models.PositiveBigIntegerField(default=0)
    pruned_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class TopicMessage(models.Model):
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="messages")
    # Position in the topic's stream: 1, 2, 3... in commit order. The cursor.
    seq = models.PositiveBigIntegerField(editable=False)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["topic", "seq"]
        constraints = [
            # Also the index of the poll query: topic = ? AND seq > ? ORDER BY seq.
            models.UniqueConstraint(fields=["topic", "seq"], name="notify_topic_seq"),
        ]
        indexes = [
            # Retention by age: topic = ? AND created_at < ?.
            models.Index(fields=["topic", "created_at"], name="notify_topic_age"),
        ]

    def __str__(self) -> str:
        return f"{self.topic_id} #{self.seq}"


# An announcement's id in poll answers and in POST /notify/read: this plus its primary key.
# Clients know only notification ids (positive whole numbers, JavaScript-safe below 2**53);
# announcements share that space without ever meeting a notification's id.
ANNOUNCEMENT_IDS_FROM = 2**50


class AnnouncementsHead(models.Model):
    """The head of the one stream every user follows: ``last_seq`` of the newest announcement.

    One row, locked while an announcement is numbered, as an ``Inbox`` is for a user's
    notifications: announcements are numbered in commit order.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"announcements at {self.last_seq}"


class Announcement(models.Model):
    """One notification to every user, stored once (``notify.announce``).

    Every inbox poll follows the announcements beside the user's own notifications, so a
    broadcast to everyone costs one row and one pub/sub message, not one per user. A
    user gets the announcements made while their account existed (``last_user_id``: the
    highest user id when it was made) and reads each one with a row of their own only
    when they mark it read (``AnnouncementRead``; "mark all read" moves
    ``Inbox.announcements_read`` instead).
    """

    # Position in the announcements stream: 1, 2, 3... in commit order. The cursor.
    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    kind = models.CharField(
        max_length=KIND_MAX_LENGTH, blank=True, validators=[RegexValidator(KIND_PATTERN, f"A kind is {KIND_RULE}.")]
    )
    url = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Users with a higher id were created after it: they do not get it.
    last_user_id = models.PositiveBigIntegerField(editable=False)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return self.title

    # Fixed at creation: renumbered, it would be seen twice or never along a cursor chain.
    FROZEN_FIELDS = ("seq", "last_user_id")

    def save(self, *args: Any, **kwargs: Any) -> None:
        _refuse_frozen_changes(self, self.FROZEN_FIELDS, kwargs)
        super().save(*args, **kwargs)

    @property
    def public_id(self) -> int:
        return ANNOUNCEMENT_IDS_FROM + self.pk

    def as_dict(self, *, read: bool = False) -> dict[str, Any]:
        """As a notification in the inbox's answer (``read``: by the user it is answered to)."""
        return {
            "id": self.public_id,
            "title": self.title,
            "body": self.body,
            "level": self.level,
            "kind": self.kind,
            "url": self.url,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
            "read": read,
            "group": None,  # never grouped: one row for everyone
        }


class AnnouncementRead(models.Model):
    """One user read one announcement (above their ``Inbox.announcements_read``)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    announcement = models.ForeignKey(Announcement, on_delete=models.CASCADE, related_name="reads")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "announcement"], name="notify_announcement_read")]

    def __str__(self) -> str:
        return f"user {self.user_id} read announcement {self.announcement_id}"


class NotificationPreferences(models.Model):
    """What one user wants beyond the rules (``PreferenceRule``): email at all, and when.

    Created on the first change; a user without a row has the defaults
    (notify.preferences).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="notify_preferences"
    )
    # False: no email at all (the digest's unsubscribe link turns it off).
    email_enabled = models.BooleanField(default=True)
    # Quiet hours for email, in the user's time zone: no digest is sent between start and
    # end (an end before the start spans midnight). Both or neither.
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    # An IANA time zone name ("Europe/Paris"); blank: settings.TIME_ZONE.
    timezone = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "notification preferences"
        verbose_name_plural = "notification preferences"

    def __str__(self) -> str:
        return f"notification preferences of user {self.user_id}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        problems: dict[str, str] = {}
        if (self.quiet_start is None) != (self.quiet_end is None):
            problems["quiet_end" if self.quiet_end is None else "quiet_start"] = (
                "Give quiet hours both a start and an end, or neither."
            )
        try:
            check_timezone(self.timezone)
        except ValueError as problem:
            problems["timezone"] = str(problem)
        if problems:
            raise ValidationError(problems)


class PreferenceRule(models.Model):
    """How one user wants notifications of a kind and level: in the page, by email, both or neither.

    ``kind`` blank matches every kind, and a kind matches its dotted descendants
    ("billing" covers "billing.invoice"); ``level`` blank matches every level. The
    most specific rule wins (notify.preferences).
    """

    # The user's NotificationPreferences (whose primary key is the user's id): a rule
    # belongs to a user's preferences, and the admin edits both on one page.
    preferences = models.ForeignKey(NotificationPreferences, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(
        max_length=KIND_MAX_LENGTH,
        blank=True,
        validators=[RegexValidator(KIND_PATTERN, f"A kind is {KIND_RULE}.")],
        help_text="Blank: every kind. 'billing' also covers 'billing.invoice'.",
    )
    level = models.CharField(max_length=10, choices=Level.choices, blank=True, help_text="Blank: every level.")
    page = models.BooleanField(default=True, help_text="Show it in the page.")
    email = models.BooleanField(default=True, help_text="Email it if it is still unread after a while.")

    class Meta:
        ordering = ["preferences", "kind", "level"]
        constraints = [models.UniqueConstraint(fields=["preferences", "kind", "level"], name="notify_preference_rule")]

    def __str__(self) -> str:
        return f"{self.kind or 'every kind'}/{self.level or 'every level'}: page={self.page} email={self.email}"


class DigestStatus(models.TextChoices):
    PENDING = "pending", "to be sent"  # claimed: a scheduler sends it (again, after a failure)
    SENT = "sent", "sent"
    DROPPED = "dropped", "not sent"  # nothing left to send when its turn came (all read, email off)


class Digest(models.Model):
    """One email of what stayed unread, to one user: the outbox of notify.digests.

    Created, with its notifications claimed (``Notification.digest``), in one
    transaction; sent after that transaction commits, and marked sent. A scheduler
    that dies in between leaves it pending: the next one sends it. ``message_id`` is
    fixed when it is created, so a digest sent twice (killed after the SMTP server took
    it, before it was marked sent) is one message to the mail clients that dedupe.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notify_digests")
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=8, choices=DigestStatus.choices, default=DigestStatus.PENDING)
    message_id = models.CharField(max_length=200, unique=True, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    # A scheduler sending it holds it until then; past it (the scheduler died) another may.
    leased_until = models.DateTimeField(null=True, blank=True)
    # After a failed send: when to try again, how often it failed, and why last time.
    attempts = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sender's query: pending digests, oldest first.
            models.Index(fields=["created_at"], condition=models.Q(status="pending"), name="notify_digest_pending"),
        ]

    def __str__(self) -> str:
        return f"digest {self.pk} to user {self.user_id} ({self.status})"


class DigestSchedule(models.Model):
    """When one user's next digest may go: the end of their digest window, or of their quiet
    hours. Its row is also the user's lock: a scheduler claims a user's digest holding it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="notify_digest_schedule"
    )
    not_before = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"next digest of user {self.user_id} not before {self.not_before}"
