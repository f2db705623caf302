"""Grouping: sends of the same kind about the same thing collapse into one notification.

``notify.send(users, "{actors} commented on Post 42", kind="blog.comment", group="post:42",
actor="alice")``: a recipient who already has an unread notification of that kind and group,
delivered within GROUP_WINDOW seconds, does not get a second one. The send creates one new
notification for them (a new seq: cursors only ever move forward) that counts the old one's
sends and its own, names the newest actors, and deletes the old one, in one transaction,
while the recipient's stream head is locked (``collapse``, called by
``NotificationQuerySet.bulk_create`` right after ``assign_seqs``). docs/grouping.md gives the
rule, and why a client following its cursor sees every send once.
"""

from __future__ import annotations

import datetime
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.translation import gettext, ngettext

from notify.conf import conf
from notify.models import CHUNK, GROUP_MAX_LENGTH

if TYPE_CHECKING:
    from notify.models import Notification

# A group key: what the notifications are about ("post:42", "issue/16", "order#7"). Printable
# ASCII without blanks, so that it is the same in a URL, a log line and a client's comparison.
GROUP_PATTERN = re.compile(rf"\A[A-Za-z0-9._:/#@+=-]{{1,{GROUP_MAX_LENGTH}}}\Z")
GROUP_RULE = f"1 to {GROUP_MAX_LENGTH} characters of A-Z, a-z, 0-9 and . _ : / # @ + = - (e.g. 'post:42')"
# An actor is a display name ("alice", "Alice Martin"); Django's usernames are at most 150.
ACTOR_MAX_LENGTH = 150
# The placeholder a grouped notification's title may hold: replaced by ``actors_text``.
ACTORS = "{actors}"


class GroupingError(ValueError):
    """Notifications that cannot be grouped as asked (two of one group for one recipient in one insert)."""


def check_group(group: Any, kind: Any) -> str:
    """Refuse, with a clear error, what cannot be a group key (or a group without a kind)."""
    if not isinstance(group, str):
        raise TypeError(f"group must be a string, got {type(group).__name__} {group!r}")
    if group and not GROUP_PATTERN.match(group):
        raise ValueError(f"Unsupported group {group[:60]!r}: a group is {GROUP_RULE}, or '' for none")
    if group and not kind:
        raise ValueError(
            f"group {group!r} needs a kind: notifications collapse when kind and group are the same "
            "(e.g. kind='blog.comment', group='post:42')"
        )
    return group


def check_actor(actor: Any, group: str) -> str | None:
    """Refuse, with a clear error, what cannot be an actor's display name (or an actor without a group)."""
    if actor is None:
        return None
    if not isinstance(actor, str):
        raise TypeError(f"actor must be a string (a display name) or None, got {type(actor).__name__} {actor!r}")
    if not actor.strip() or not actor.isprintable():
        raise ValueError(f"actor must be a display name of printable characters, got {actor[:60]!r}")
    if len(actor) > ACTOR_MAX_LENGTH:
        raise ValueError(f"actor is {len(actor)} characters long; at most {ACTOR_MAX_LENGTH} are accepted")
    if not group:
        raise ValueError("actor is given only with a group: it names who acted in the group (e.g. group='post:42')")
    return actor


def actors_text(actors: Sequence[str], count: int) -> str:
    """``count`` people, the first ``actors`` named: "alice", "alice and bob", "alice and 3 others".

    Translated (Django's ngettext), so a project's locale files can word it their way.
    """
    others = count - 1
    if not actors:
        return ngettext("%(count)d person", "%(count)d people", count) % {"count": count}
    if others <= 0:
        return actors[0]
    if others == 1 and len(actors) >= 2:
        return gettext("%(first)s and %(second)s") % {"first": actors[0], "second": actors[1]}
    return ngettext("%(first)s and %(count)d other", "%(first)s and %(count)d others", others) % {
        "first": actors[0],
        "count": others,
    }


def people(actors: Sequence[str], count: int) -> int:
    """How many people a group of ``count`` sends naming ``actors`` stands for, for ``actors_text``.

    Exact while fewer than GROUP_MAX_ACTORS are named: the list keeps every distinct actor until
    it is full. Once full, actors may have been dropped, so every send counts as one more person:
    exact when each person acts once (a like, a follow), more than there are when people act
    again (raise GROUP_MAX_ACTORS for such kinds).
    """
    if len(actors) < conf.GROUP_MAX_ACTORS:
        return len(actors) or count
    return max(len(actors), count)


def title_for(template: str, actors: Sequence[str], count: int) -> str:
    """The sender's title with ``{actors}`` replaced (no other braces are read: not str.format,
    which a title could use to reach attributes), cut to the title's length with an ellipsis."""
    from notify.models import Notification

    if ACTORS not in template:
        return template
    title = template.replace(ACTORS, actors_text(actors, people(actors, count)))
    most = Notification._meta.get_field("title").max_length or len(title)
    return title if len(title) <= most else title[: most - 1] + "…"


def merged_actors(newest_first: Sequence[Sequence[str]]) -> list[str]:
    """The distinct actors of several lists, newest first, at most GROUP_MAX_ACTORS."""
    return list(dict.fromkeys(actor for actors in newest_first for actor in actors))[: conf.GROUP_MAX_ACTORS]


def collapse(notifications: Sequence[Notification], *, using: str) -> None:
    """Fold each recipient's open notification of the same kind and group into the new one.

    Must run inside the transaction that inserts ``notifications``, after ``assign_seqs`` has
    locked their recipients' stream heads: a second sender to the same recipient waits at that
    lock, so it finds the open notification as this transaction leaves it (deleted, and the new
    one in its place), never the same one as this one does. The open rows are also locked (FOR
    UPDATE), so a "mark read" racing this send either lands first (the row is read: a new group
    starts) or finds the row gone.

    Sets each new grouped notification's ``group_count``, ``group_actors`` and title (the
    sender's, ``{actors}`` replaced); deletes what it replaces. A reminder not yet due or an
    email-only notification (no seq) collapses nothing and is never collapsed into.
    """
    from notify.models import Notification

    grouped = [n for n in notifications if n.group]
    if not grouped:
        return
    by_key: dict[tuple[str, str], dict[int, Notification]] = defaultdict(dict)
    for n in grouped:
        if n.seq is None or conf.GROUP_WINDOW == 0:
            continue
        batch = by_key[(n.kind, n.group)]
        if n.recipient_id in batch:
            raise GroupingError(
                f"two notifications of kind {n.kind!r} and group {n.group!r} for user {n.recipient_id} in one "
                "insert: send them one after the other"
            )
        batch[n.recipient_id] = n
    rows = Notification.objects.using(using)
    replaced: list[int] = []
    for (kind, group), batch in by_key.items():
        user_ids = sorted(batch)
        for start in range(0, len(user_ids), CHUNK):
            chunk = user_ids[start : start + CHUNK]
            # The partial index notify_open_group's condition is spelled out (read_at IS NULL, group
            # != ''), so that SQLite and PostgreSQL use it: recipient, kind and group, then seq.
            found = (
                rows.select_for_update()
                .filter(recipient_id__in=chunk, kind=kind, group=group, read_at__isnull=True, seq__isnull=False)
                .exclude(group="")
            )
            since = _window_start()
            if since is not None:
                found = found.filter(created_at__gte=since)
            # Newest first: each recipient's newest open one is the group this send continues.
            # Normally it is the only one; an older one can be unread too (marked unread again
            # through the history API): it is another group, left as it is, so that every
            # notification of one group has the same group_first (the client rule).
            newest = found.order_by("recipient_id", "-seq").values_list(
                "pk", "recipient_id", "group_count", "group_actors", "group_first"
            )
            continued: set[int] = set()
            for pk, recipient_id, count, actors, first in newest:
                if recipient_id in continued:
                    continue
                continued.add(recipient_id)
                new = batch[recipient_id]
                new.group_count += count
                new.group_actors = merged_actors([new.group_actors, actors if isinstance(actors, list) else []])
                new.group_first = first or pk
                replaced.append(pk)
    for n in grouped:
        n.group_actors = merged_actors([n.group_actors])
        n.title = title_for(n.title, n.group_actors, n.group_count)
    for start in range(0, len(replaced), CHUNK):
        rows.filter(pk__in=replaced[start : start + CHUNK]).delete()


def _window_start() -> datetime.datetime | None:
    """The oldest creation time an open notification may have to be collapsed into (None: any)."""
    window = conf.GROUP_WINDOW
    return None if window is None else timezone.now() - datetime.timedelta(seconds=window)


def fields(group: Any, actor: Any, *, kind: str, deliver_at: datetime.datetime | None) -> dict[str, Any]:
    """The grouping fields of a send's notifications, once ``group`` and ``actor`` are checked.

    A reminder is not grouped: it is numbered when it falls due, and collapsing then would need
    the dispatcher to do what ``collapse`` does; refused rather than half done.
    """
    group = check_group(group, kind)
    actor = check_actor(actor, group)
    if group and deliver_at is not None:
        raise ValueError("a reminder (deliver_at in the future) cannot be grouped: send it without group")
    if not group:
        return {}
    return {"group": group, "group_actors": [actor] if actor else []}
