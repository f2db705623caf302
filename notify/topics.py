"""Topic streams: named streams besides each user's inbox (a chat room, a lobby, a document's activity).

``publish`` numbers a message in its topic's stream under a lock on the Topic row
(as ``notify.sending.assign_seqs`` does for an Inbox), so a topic's sequence
numbers are handed out in commit order and a cursor never moves past one that has
yet to commit. It trims the topic to its retention in the same transaction, and
publishes on ``<prefix>:topic:<name>`` once the transaction commits.

Who may read or post is the project's call: ``NOTIFY["TOPIC_PERMISSION"]`` names a
callable ``(user, topic, action) -> bool``; without one every topic is closed.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from datetime import timedelta
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, Literal

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.module_loading import import_string

from notify import metrics, pages
from notify.conf import conf
from notify.cursor import INBOX
from notify.jsondepth import TooDeep, nests_deeper_than
from notify.sizes import TooLarge

if TYPE_CHECKING:
    from notify.models import TopicMessage

logger = logging.getLogger("notify")

Action = Literal["read", "post"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
# Names a topic (the user's own stream's name in a multi-stream poll, notify.cursor.INBOX) may not take.
RESERVED = frozenset({INBOX})
NAME_RULE = "1 to 100 characters of A-Z a-z 0-9 _ . : -, and not 'inbox'"
# Topics of notify's own (the admin's live dashboard: notify.dashboard). Staff users with the
# dashboard's permission may read them, whatever TOPIC_PERMISSION says; nobody may post.
RESERVED_PREFIX = "notify-ops:"


class InvalidTopic(ValueError):
    """A topic name outside NAME_RULE."""


def check_name(name: Any) -> str:
    """``name`` if it is a valid topic name; InvalidTopic saying what is accepted otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in RESERVED:
        shown = name[:40] if isinstance(name, str) else name
        raise InvalidTopic(f"A topic name must be {NAME_RULE}; got {shown!r}.")
    return name


def check_data(data: Any) -> None:
    """Refuse, with a clear TypeError or ValueError, data some database would refuse at insert,
    that nests deeper than MAX_JSON_DEPTH (TooDeep, a ValueError), or that is larger than
    MAX_TOPIC_MESSAGE_BYTES (TooLarge, a ValueError).

    The rules of a notification's data (notify.sending.check_content: JSON-serialisable,
    no NUL), and also what PostgreSQL's jsonb refuses beyond them: NaN and infinities,
    and lone surrogates (which JSON bodies can carry as "\\ud800"). The depth is checked
    first, without recursion: json.dumps below and every answer carrying the message
    encode it recursively. The size is the data's as compact JSON in UTF-8: every poll
    answer that carries the message carries about that much (issue 13: fifty 2.5 MB
    messages made one room's page 127 MB).
    """
    if not isinstance(data, dict):
        raise TypeError(f"data must be a JSON object (a dict), got {type(data).__name__}")
    limit = conf.MAX_JSON_DEPTH
    if nests_deeper_than(data, limit):
        raise TooDeep(f"data nests more than {limit} levels deep (NOTIFY['MAX_JSON_DEPTH'])")
    try:
        encoded = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except RecursionError:
        raise ValueError("data is nested too deeply") from None
    except (TypeError, ValueError) as error:
        raise TypeError(f"data must be JSON-serializable without NaN or infinities: {error}") from None
    if "\\u0000" in encoded:  # json escapes control characters, ensure_ascii or not
        raise ValueError("data must not contain NUL (\\x00) characters")
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("data must not contain lone surrogates (invalid Unicode)") from None
    limit = conf.MAX_TOPIC_MESSAGE_BYTES
    if size > limit:
        raise TooLarge(
            f"data is {size} bytes as JSON; a topic message may be at most {limit} (NOTIFY['MAX_TOPIC_MESSAGE_BYTES'])"
        )


# --- retention ----------------------------------------------------------------------


def retention_for(name: str) -> tuple[int | None, float | None]:
    """``(keep_last, keep_seconds)`` for a topic: the longest pattern of TOPIC_RETENTION that matches it.

    A topic no pattern matches is kept whole.
    """
    if name.startswith(RESERVED_PREFIX):
        from notify.dashboard import KEEP

        return KEEP, None
    rules = conf.TOPIC_RETENTION
    matching = [pattern for pattern in rules if fnmatch.fnmatchcase(name, pattern)]
    if not matching:
        return None, None
    rule = rules[max(matching, key=len)]
    return rule.get("keep_last"), rule.get("keep_seconds")


def _prune(name: str, last_seq: int, pruned_seq: int, *, using: str) -> int:
    """Delete what the topic's retention no longer keeps; return the new pruned_seq.

    Everything up to the new pruned_seq is deleted, so what is kept is always the
    unbroken run ``pruned_seq + 1 .. last_seq``: a cursor at or past pruned_seq
    misses nothing.
    """
    from notify.models import TopicMessage

    keep_last, keep_seconds = retention_for(name)
    cutoff = pruned_seq
    if keep_last is not None:
        cutoff = max(cutoff, last_seq - keep_last)
    if keep_seconds is not None:
        oldest_kept = timezone.now() - timedelta(seconds=keep_seconds)
        expired = (
            TopicMessage.objects.using(using)
            .filter(topic_id=name, seq__gt=cutoff, created_at__lt=oldest_kept)
            .aggregate(seq=Max("seq"))["seq"]
        )
        if expired is not None:
            cutoff = max(cutoff, expired)
    if cutoff > pruned_seq:
        TopicMessage.objects.using(using).filter(topic_id=name, seq__lte=cutoff).delete()
    return cutoff


# --- publishing ----------------------------------------------------------------------


def message_dict(message: TopicMessage, sender: Any = None) -> dict[str, Any]:
    """A topic message as polls answer it. ``sender``: the user object, if already at hand."""
    sender = sender if sender is not None else (message.sender if message.sender_id is not None else None)
    return {
        "id": message.pk,
        "topic": message.topic_id,
        "data": message.data,
        "sender": None if sender is None else {"id": sender.pk, "username": sender.get_username()},
        "created_at": message.created_at.isoformat(),
    }


def publish(topic: str, data: dict[str, Any], *, sender: Any = None, using: str = "default") -> TopicMessage:
    """Append a message to a topic and wake its held polls once the transaction commits.

    ``sender`` is a user, a user id, or None. Works inside a transaction (published
    when it commits, never if it rolls back) and outside one. Raises InvalidTopic,
    TypeError or ValueError (TooDeep, TooLarge: past a limit) before writing anything if
    the arguments are refused.
    """
    from notify.models import Topic, TopicMessage

    check_name(topic)
    check_data(data)
    sender_user = _resolve_sender(sender, using=using)
    with transaction.atomic(using=using, savepoint=False):
        topics = Topic.objects.using(using)
        topics.bulk_create([Topic(name=topic)], ignore_conflicts=True)
        # Held until the transaction ends: the next publisher to this topic waits,
        # so seqs are handed out in commit order (see docs/delivery.md).
        last_seq, pruned_seq = topics.select_for_update().filter(name=topic).values_list("last_seq", "pruned_seq")[0]
        seq = last_seq + 1
        message = TopicMessage.objects.using(using).create(
            topic_id=topic, seq=seq, sender=sender_user, data=data, created_at=timezone.now()
        )
        pruned = _prune(topic, seq, pruned_seq, using=using)
        topics.filter(name=topic).update(last_seq=seq, pruned_seq=pruned)
    payload = pages.message(seq, None, message_dict(message, sender_user))
    transaction.on_commit(partial(_publish, topic, payload), using=using)
    return message


async def apublish(topic: str, data: dict[str, Any], *, sender: Any = None, using: str = "default") -> TopicMessage:
    """The async twin of ``publish``."""
    return await sync_to_async(publish)(topic, data, sender=sender, using=using)


def _resolve_sender(sender: Any, *, using: str) -> Any:
    User = get_user_model()
    if sender is None or isinstance(sender, User):
        return sender
    if isinstance(sender, bool) or not isinstance(sender, int):
        raise TypeError(f"sender must be a user, a user id or None, got {sender!r}")
    try:
        return User._default_manager.using(using).get(pk=sender)
    except User.DoesNotExist:
        raise ValueError(f"No user with id {sender}.") from None


def _publish(topic: str, payload: bytes) -> None:
    """Wake the topic's held polls. A failure is logged, never raised: the message is
    committed, and the next poll that checks the database delivers it."""
    from notify.broker import get_broker

    metrics.topic_message_published()
    try:
        get_broker().publish_many([(conf.channel_for_topic(topic), payload)])
    except Exception:
        logger.exception(
            "notify: could not publish to topic %r; the message is saved and the next poll delivers it", topic
        )


# --- permission ----------------------------------------------------------------------


@lru_cache(maxsize=8)
def _hook(path: str) -> Any:
    return import_string(path)


def permitted(user_id: int, topic: str, action: Action) -> bool:
    """Whether the project's TOPIC_PERMISSION lets this user ``action`` the topic. Synchronous
    (runs in notify.db's threads: the hook may query the database).

    No hook: no. A hook that raises is logged and counts as no: a bug there must
    not open a topic. Topics under RESERVED_PREFIX are notify's and never the hook's.
    """
    path = conf.TOPIC_PERMISSION
    if path is None and not topic.startswith(RESERVED_PREFIX):
        return False
    user = get_user_model()._default_manager.filter(pk=user_id).first()
    if user is None:
        return False
    if topic.startswith(RESERVED_PREFIX):
        from notify import dashboard

        return dashboard.reads(user, topic, action)
    try:
        return bool(_hook(path)(user, topic, action))
    except Exception:
        logger.exception("notify: TOPIC_PERMISSION %s failed for topic %r; access denied", path, topic)
        return False
