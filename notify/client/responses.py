"""Turning an HTTP answer into a page or into the error that says what to do next."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, NotRequired, TypedDict

from notify.client.backoff import parse_retry_after
from notify.client.errors import (
    AuthenticationError,
    CursorExpiredError,
    InvalidCursorError,
    ProtocolError,
    RequestError,
    TransientError,
)


class NotificationGroup(TypedDict):
    """What a grouped notification stands for (docs/grouping.md): ``count`` sends of its kind about
    ``key``, the newest ``actors`` first. It replaces every earlier notification with the same kind,
    key and ``first_id``: a client that lists notifications drops those."""

    key: str
    count: int
    actors: list[str]
    first_id: int


class Notification(TypedDict):
    """One notification, exactly as the server sends it."""

    id: int
    title: str
    body: str
    level: str
    kind: NotRequired[str]  # "" for none; absent from servers older than the field
    url: str
    data: Any
    created_at: str
    read: bool
    group: NotRequired[NotificationGroup | None]  # None for none; absent from servers older than grouping


def replaces(newer: Notification, older: Notification) -> bool:
    """Grouping's client rule: ``newer`` replaces ``older`` (same kind, key and first_id; older id)."""
    group, other = newer.get("group"), older.get("group")
    return (
        group is not None
        and other is not None
        and older["id"] < newer["id"]
        and (newer.get("kind", ""), group["key"], group["first_id"])
        == (older.get("kind", ""), other["key"], other["first_id"])
    )


@dataclass(frozen=True)
class Page:
    """One poll answer: notifications oldest first, and the cursor after the last of them."""

    cursor: str
    notifications: list[Notification]
    unread_count: int


class StreamItem(NamedTuple):
    """What a multi-stream client yields: the stream it came from (``"inbox"`` or a topic)
    and the notification or topic message, exactly as the server sent it."""

    stream: str
    item: dict[str, Any]


@dataclass(frozen=True)
class StreamsPage:
    """One multi-stream poll answer: items stream by stream (in the order asked), each oldest first,
    and the compound cursor after them."""

    cursor: str
    items: list[StreamItem]
    unread_count: int | None  # the inbox's, when the inbox is one of the streams


def payload_of(status: int, headers: Mapping[str, str], body: bytes, url: str) -> dict[str, Any]:
    """The JSON object of a successful answer; otherwise raise the error its status calls for."""
    if 200 <= status < 300:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise ProtocolError(
                f"{url} answered {status} with {_excerpt(body)}, not a JSON object: is the URL that of the notify app?",
                status=status,
            )
        return payload

    code, detail, extra = _error_of(body)
    said = f"{url} answered {status}" + (f" {code}" if code else "") + f": {detail}"
    stream = extra.get("stream") if isinstance(extra.get("stream"), str) else None
    if status == 401:
        raise AuthenticationError(
            f"{said} The token was refused; issue a new one with `manage.py notify_token <username>`.",
            status=status,
            code=code,
        )
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        raise TransientError(said, status=status, code=code, retry_after=retry_after)
    if status == 400 and code == "invalid_cursor":
        raise InvalidCursorError(said, status=status, code=code, stream=stream)
    oldest = extra.get("oldest_cursor")
    if status == 410 and code == "cursor_expired" and isinstance(oldest, str):
        raise CursorExpiredError(said, status=status, code=code, stream=stream, oldest_cursor=oldest)
    if 300 <= status < 400:
        said = f"{url} redirected ({status}) to {headers.get('Location', 'nowhere')!r}: give the URL it points to."
    elif status == 404:
        said += " Check the base URL and the path the notify app is mounted at."
    raise RequestError(said, status=status, code=code)


def page_of(payload: dict[str, Any], url: str) -> Page:
    cursor = payload.get("cursor")
    notifications = payload.get("notifications")
    unread = payload.get("unread_count")
    if (
        not isinstance(cursor, str)
        or not isinstance(notifications, list)
        or not all(isinstance(n, dict) for n in notifications)
        or not isinstance(unread, int)
    ):
        raise ProtocolError(f"{url} answered a JSON object that is not a poll page: {_excerpt(json.dumps(payload))}")
    return Page(cursor=cursor, notifications=notifications, unread_count=unread)


def streams_page_of(payload: dict[str, Any], url: str, streams: list[str]) -> StreamsPage:
    """A multi-stream answer, checked to hold every stream asked for."""
    cursor = payload.get("cursor")
    answered = payload.get("streams")
    if not isinstance(cursor, str) or not isinstance(answered, dict):
        raise _not_a_streams_page(payload, url, streams)
    items: list[StreamItem] = []
    unread: int | None = None
    for name in streams:
        part = answered.get(name)
        key = "notifications" if name == "inbox" else "messages"
        listed = part.get(key) if isinstance(part, dict) else None
        if not isinstance(part, dict) or not isinstance(listed, list) or not all(isinstance(i, dict) for i in listed):
            raise _not_a_streams_page(payload, url, streams)
        items += [StreamItem(name, i) for i in listed]
        if name == "inbox":
            unread = part.get("unread_count")
            if not isinstance(unread, int):
                raise _not_a_streams_page(payload, url, streams)
    return StreamsPage(cursor=cursor, items=items, unread_count=unread)


def _not_a_streams_page(payload: dict[str, Any], url: str, streams: list[str]) -> ProtocolError:
    return ProtocolError(
        f"{url} answered a JSON object that is not a poll page of streams {', '.join(streams)}: "
        f"{_excerpt(json.dumps(payload))}"
    )


def message_of(payload: dict[str, Any], url: str) -> dict[str, Any]:
    """The message of a publish answer."""
    message = payload.get("message")
    if not isinstance(message, dict):
        raise ProtocolError(f"{url} answered without a message: {_excerpt(json.dumps(payload))}")
    return message


def unread_count_of(payload: dict[str, Any], url: str) -> int:
    unread = payload.get("unread_count")
    if not isinstance(unread, int):
        raise ProtocolError(f"{url} answered without an unread_count: {_excerpt(json.dumps(payload))}")
    return unread


def _error_of(body: bytes) -> tuple[str | None, str, dict[str, Any]]:
    """``(code, detail, the whole body)`` from the contract's error body, or the start of whatever else came."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        code = payload.get("error")
        return (code if isinstance(code, str) else None), payload["detail"], payload
    return None, f"{_excerpt(body)}.", {}


def _excerpt(body: bytes | str, length: int = 120) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    if not text:
        return "an empty body"
    return repr(text[:length] + ("…" if len(text) > length else ""))
