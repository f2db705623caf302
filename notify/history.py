"""The history API: a user's notifications as JSON for any front end, with the poll's auth.

``GET /notify/history`` lists them newest first, a page at a time (``before``: the
``next`` cursor of the page before), filtered by ``unread``, ``level`` and ``kind``;
``POST /notify/history/read``, ``/unread`` and ``/delete`` act on ids;
``GET /notify/history/unread_count`` is the badge. docs/history.md is the contract,
notify/openapi.json its machine-readable form.

Delete is a hard delete. A poll's cursor is a position in the user's stream
(``seq``), handed out by the Inbox head, which never goes back: deleting rows leaves
gaps, and a poll past a gap reads the next row that is still there (``seq > after``).
So a held cursor stays valid, nothing is answered twice, and a deleted notification
is simply never answered again. History pages use the same positions, so a page
chain neither skips nor repeats whatever is sent or deleted meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from notify import announcements, cursor, db, pages
from notify.auth import authenticate
from notify.conf import conf
from notify.models import KIND_PATTERN, KIND_RULE, Level, Notification, NotificationQuerySet
from notify.params import MAX_READ_IDS, BadRequest, parse_ids, query_of
from notify.views import ANSWERED, answer, answer_error, authenticated_post, json_body, method_not_allowed

# Kinds one list may filter on at once (kind=a,b,c).
MAX_KIND_FILTERS = 10
_TRUE = ("true", "1")
_FALSE = ("false", "0")


# --- what the client sends -----------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    unread: bool | None = None  # None: read and unread
    levels: tuple[str, ...] = ()  # (): every level
    kinds: tuple[str, ...] = ()  # (): every kind, blank included


@dataclass(frozen=True)
class ListParams:
    before: int | None
    limit: int
    filters: Filters


def parse_list(query: QueryDict) -> ListParams:
    before = None
    raw_before = query.get("before")
    if raw_before:
        try:
            before = cursor.decode(raw_before)
        except cursor.InvalidCursor:
            raise BadRequest(
                "invalid_cursor",
                f"'before' must be the 'next' cursor of an earlier history page, got {raw_before[:40]!r}; "
                "leave it out for the newest page.",
            ) from None
    return ListParams(before=before, limit=_limit(query.get("limit")), filters=parse_filters(query))


def _limit(raw: str | None) -> int:
    maximum = conf.HISTORY_MAX_LIMIT
    if not raw:
        return min(conf.HISTORY_DEFAULT_LIMIT, maximum)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and 1 <= int(raw) <= maximum):
        raise BadRequest("invalid_limit", f"'limit' must be a whole number from 1 to {maximum}, got {raw[:40]!r}.")
    return int(raw)


def parse_filters(query: QueryDict) -> Filters:
    unread = None
    raw = query.get("unread")
    if raw:
        if raw.lower() not in _TRUE + _FALSE:
            raise BadRequest("invalid_filter", f"'unread' must be true or false, got {raw[:40]!r}.")
        unread = raw.lower() in _TRUE
    levels: tuple[str, ...] = ()
    raw = query.get("level")
    if raw:
        levels = tuple(dict.fromkeys(raw.split(",")))
        wrong = [level for level in levels if level not in Level.values]
        if wrong:
            raise BadRequest(
                "invalid_filter",
                f"'level' must be one or more of {', '.join(Level.values)}, comma-separated; got {wrong[0][:40]!r}.",
            )
    kinds: tuple[str, ...] = ()
    raw = query.get("kind")
    if raw:
        parts = raw.split(",", MAX_KIND_FILTERS)
        if len(parts) > MAX_KIND_FILTERS:
            raise BadRequest("invalid_filter", f"'kind' may name at most {MAX_KIND_FILTERS} kinds, comma-separated.")
        kinds = tuple(dict.fromkeys(parts))
        wrong = [kind for kind in kinds if not KIND_PATTERN.match(kind)]
        if wrong:
            raise BadRequest(
                "invalid_filter",
                f"'kind' must be one or more kinds, comma-separated, each {KIND_RULE}; got {wrong[0][:60]!r}.",
            )
    return Filters(unread=unread, levels=levels, kinds=kinds)


# --- queries (synchronous: notify.db's threads) ----------------------------------------


def _delivered(user_id: int) -> NotificationQuerySet:
    """The user's notifications the history knows: delivered ones (a reminder not yet due is
    not in the stream yet; ``notify.cancel`` is how it goes)."""
    return Notification.objects.filter(recipient_id=user_id).delivered()


def unread_count_of(user_id: int) -> int:
    """The badge: unread notifications and announcements, as the poll counts them."""
    own = _delivered(user_id).filter(read_at__isnull=True).count()
    return own + announcements.unread_counts([user_id]).get(user_id, 0)


def filtered(rows: NotificationQuerySet, filters: Filters) -> NotificationQuerySet:
    if filters.unread is not None:
        rows = rows.filter(read_at__isnull=filters.unread)
    if filters.levels:
        rows = rows.filter(level__in=filters.levels)
    if filters.kinds:
        rows = rows.filter(kind__in=filters.kinds)
    return rows


def page(user_id: int, params: ListParams) -> dict[str, Any]:
    """One page, newest first: at most ``limit`` notifications and no more than fit in
    MAX_ANSWER_BYTES; ``next`` is the cursor of the page after it, None on the last."""
    rows = filtered(_delivered(user_id), params.filters)
    if params.before is not None:
        rows = rows.filter(seq__lt=params.before)
    # One more than the page: whether there is a next page, without a second query.
    found = list(rows.order_by("-seq")[: params.limit + 1])
    dicts = [n.as_dict() for n in found[: params.limit]]
    kept = pages.within_budget(dicts, conf.MAX_ANSWER_BYTES, lambda d: len(pages.notification_json(d)))
    more = len(kept) < len(found)
    last = found[len(kept) - 1].seq if kept else None
    return {
        "notifications": kept,
        "next": cursor.encode(last) if more and last is not None else None,
        "unread_count": unread_count_of(user_id),
    }


def mark(user_id: int, ids: list[int] | None, *, read: bool) -> dict[str, int]:
    """Mark the user's notifications read or unread (``ids`` None: all of them)."""
    rows = _delivered(user_id)
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    if read:
        updated = rows.filter(read_at__isnull=True).update(read_at=timezone.now())
        # Announcements are not listed here, but read here as by POST /notify/read.
        if ids is None:
            announcements.mark_all_read(user_id)
        else:
            announcements.mark_read(user_id, ids)
    else:
        updated = rows.filter(read_at__isnull=False).update(read_at=None)
    return {"updated": updated, "unread_count": unread_count_of(user_id)}


def delete(user_id: int, ids: list[int]) -> dict[str, int]:
    """Delete the user's notifications among ``ids``, for good (see the module docstring)."""
    deleted, _ = _delivered(user_id).filter(pk__in=ids).delete()
    return {"deleted": deleted, "unread_count": unread_count_of(user_id)}


# --- views -----------------------------------------------------------------------------


@csrf_exempt  # GET only: it changes nothing
async def history(request: HttpRequest) -> HttpResponse:
    """``GET /notify/history``: a page of the user's notifications, newest first."""
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        params = parse_list(query_of(request))
        user_id, _ = await authenticate(request)
        found = await db.read(page, user_id, params)
    except ANSWERED as problem:
        return answer_error(problem)
    # Compact, as poll answers are: MAX_ANSWER_BYTES was counted so.
    return json_body(json.dumps(found, separators=(",", ":")).encode())


@csrf_exempt  # GET only: it changes nothing
async def unread_count(request: HttpRequest) -> JsonResponse:
    """``GET /notify/history/unread_count``: ``{"unread_count": n}``."""
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        query_of(request)  # refuses a flood of parameters, which nothing else here would read
        user_id, _ = await authenticate(request)
        return answer({"unread_count": await db.read(unread_count_of, user_id)})
    except ANSWERED as problem:
        return answer_error(problem)


async def _change(request: HttpRequest, *, action: str) -> JsonResponse:
    """A POST that changes notifications: notify.views.authenticated_post (auth, CSRF for a session, bounds)."""

    async def act(user_id: int, body: bytes) -> dict[str, Any]:
        ids = parse_ids(body, allow_all=action == "read")
        if action == "delete":
            assert ids is not None  # allow_all=False
            return await db.run(delete, user_id, ids)
        return await db.run(_mark, user_id, ids, action == "read")

    return await authenticated_post(request, act, too_large_hint=f"send at most {MAX_READ_IDS} ids at once.")


def _mark(user_id: int, ids: list[int] | None, read: bool) -> dict[str, int]:
    return mark(user_id, ids, read=read)


@csrf_exempt  # enforced in _change for session auth only: a bearer token is not ambient
async def mark_read(request: HttpRequest) -> JsonResponse:
    """``POST /notify/history/read``: ``{"ids": [...]}`` or ``{"all": true}``."""
    return await _change(request, action="read")


@csrf_exempt  # enforced in _change for session auth only
async def mark_unread(request: HttpRequest) -> JsonResponse:
    """``POST /notify/history/unread``: ``{"ids": [...]}``."""
    return await _change(request, action="unread")


@csrf_exempt  # enforced in _change for session auth only
async def delete_view(request: HttpRequest) -> JsonResponse:
    """``POST /notify/history/delete``: ``{"ids": [...]}``, deleted for good."""
    return await _change(request, action="delete")
