"""Validating what a client sends, with errors that say what is accepted."""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, QueryDict

from notify import cursor
from notify.conf import conf
from notify.cursor import INBOX
from notify.jsondepth import TooDeep
from notify.sizes import TooLarge
from notify.topics import NAME_RULE, InvalidTopic, check_data, check_name

_NUMBER = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,9})?")
_INTEGER = re.compile(r"-?[0-9]{1,9}")
MAX_READ_IDS = 1000
# Streams one poll may follow at once (GET /notify/poll?streams=...).
MAX_STREAMS = 10


class BadRequest(Exception):
    """Client input we refuse; ``detail`` says what is wrong and what is accepted."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class BodyTooLarge(BadRequest):
    """A body whose content is past a size limit (413 "too_large"); ``detail`` says the limit."""

    def __init__(self, detail: str) -> None:
        super().__init__("too_large", detail)


def query_of(request: HttpRequest) -> QueryDict:
    """The request's query parameters; BadRequest "too_many_fields" past DATA_UPLOAD_MAX_NUMBER_FIELDS.

    Django parses ``request.GET`` on first access and raises TooManyFieldsSent there
    (each later access parses again and raises again): every notify view asks here
    first, so that a flood of parameters is a 400 JSON, never a 500 with a traceback.
    """
    try:
        return request.GET
    except TooManyFieldsSent:
        raise too_many_fields("query string") from None


def too_many_fields(where: str) -> BadRequest:
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    return BadRequest(
        "too_many_fields",
        f"The {where} has more than {limit} fields (DATA_UPLOAD_MAX_NUMBER_FIELDS); notify's URLs take at most 4.",
    )


@dataclass(frozen=True)
class PollParams:
    after: cursor.Cursor | None
    timeout: float
    limit: int


def parse_poll(query: QueryDict, stream: str = INBOX) -> PollParams:
    """A poll of one stream (``stream``: "inbox" or a topic's name)."""
    after = None
    raw_after = query.get("after")
    if raw_after is not None and raw_after != "":
        try:
            after = cursor.decode_for(stream, raw_after)
        except cursor.InvalidCursor as error:
            raise BadRequest("invalid_cursor", str(error)) from None
    return PollParams(after=after, timeout=_timeout(query.get("timeout")), limit=_limit(query.get("limit")))


def parse_topic(name: str) -> str:
    try:
        return check_name(name)
    except InvalidTopic as error:
        raise BadRequest("invalid_topic", str(error)) from None


@dataclass(frozen=True)
class StreamsParams:
    streams: list[tuple[str, cursor.Cursor | None]]  # (name, cursor or None), in the order asked
    timeout: float
    limit: int


def parse_streams(query: QueryDict) -> StreamsParams:
    """``streams=inbox,room:42&after=inbox:5,room:42:17``: each stream and its cursor, if any."""
    names = (query.get("streams") or "").split(",")
    accepted = f"'streams' must list 1 to {MAX_STREAMS} streams, comma-separated: 'inbox' and topic names ({NAME_RULE})"
    if names == [""] or len(names) > MAX_STREAMS:
        raise BadRequest("invalid_streams", f"{accepted}; got {len(names) if names != [''] else 0}.")
    for name in names:
        if name != INBOX:
            try:
                check_name(name)
            except InvalidTopic:
                raise BadRequest("invalid_streams", f"{accepted}; got {name[:40]!r}.") from None
    if len(set(names)) != len(names):
        raise BadRequest("invalid_streams", f"{accepted}, each once.")
    try:
        cursors = cursor.decode_compound(query.get("after") or "", names)
    except cursor.InvalidCursor as error:
        raise BadRequest("invalid_cursor", str(error)) from None
    return StreamsParams(
        streams=[(name, cursors.get(name)) for name in names],
        timeout=_timeout(query.get("timeout")),
        limit=_limit(query.get("limit")),
    )


def _timeout(raw: str | None) -> float:
    maximum = conf.MAX_TIMEOUT
    if raw is None or raw == "":
        return min(conf.DEFAULT_TIMEOUT, maximum)
    if not _NUMBER.fullmatch(raw):
        raise BadRequest(
            "invalid_timeout",
            f"'timeout' must be a number of seconds such as 25 or 2.5 (at most {maximum:g} is used), got {raw[:40]!r}.",
        )
    value = float(raw)
    if value < 0:
        raise BadRequest("invalid_timeout", f"'timeout' must not be negative, got {raw!r}.")
    return min(value, maximum)


def _limit(raw: str | None) -> int:
    maximum = conf.MAX_LIMIT
    if raw is None or raw == "":
        return min(conf.DEFAULT_LIMIT, maximum)
    if not _INTEGER.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise BadRequest("invalid_limit", f"'limit' must be a whole number from 1 to {maximum}, got {raw[:40]!r}.")
    return int(raw)


# A JSON string; one never closed runs to the end of the text, so that every quote
# starts a match and none is tried twice: linear time on any input.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


def json_depth(text: str) -> tuple[int, bool]:
    """How deeply arrays and objects nest in the JSON ``text`` (``{"a": [1]}``: 2), and whether
    its brackets balance (if not, it is not JSON), read without parsing it: strings removed,
    then a running sum over the brackets, all in C (no recursion, no Python loop per
    character). Exact for valid JSON; for invalid JSON some number the parser refuses anyway.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    steps = array("b", brackets.encode("ascii").translate(_STEPS))
    return max(accumulate(steps), default=0), sum(steps) == 0


def load_json(body: bytes, *, max_depth: int, accepted: str, limit_detail: str = "") -> Any:
    """``body`` parsed as JSON, its nesting checked first: BadRequest "too_deep" past ``max_depth``
    (so the parser's recursion is never reached), "invalid_json" if it is not JSON."""
    invalid = BadRequest("invalid_json", f"The body is not valid JSON. {accepted}")
    try:
        # As json.loads does with bytes: UTF-8, -16 or -32, told by the first bytes.
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        raise invalid from None
    depth, balanced = json_depth(text)
    if not balanced:  # not JSON, however deep: said as such, as the parser would
        raise invalid
    if depth > max_depth:
        raise BadRequest(
            "too_deep",
            f"The JSON body nests {depth} levels deep; at most {max_depth} are accepted{limit_detail}. {accepted}",
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: never within max_depth; kept as a backstop
        raise invalid from None


def parse_read(body: bytes) -> list[int] | None:
    """The ids to mark read, or None for all: ``{"ids": [1, 2]}`` or ``{"all": true}``."""
    return parse_ids(body, allow_all=True)


def parse_ids(body: bytes, *, allow_all: bool) -> list[int] | None:
    """The ids a POST acts on: ``{"ids": [1, 2]}``, or None for ``{"all": true}`` where allowed."""
    accepted = 'Send a JSON object: {"ids": [<notification id>, ...]}' + (' or {"all": true}.' if allow_all else ".")
    payload = load_json(body, max_depth=conf.MAX_JSON_DEPTH, accepted=accepted)
    if not isinstance(payload, dict):
        raise BadRequest("invalid_body", f"The body must be a JSON object. {accepted}")
    if allow_all and payload.get("all") is True and "ids" not in payload:
        return None
    ids = payload.get("ids")
    if not isinstance(ids, list) or "all" in payload:
        raise BadRequest("invalid_body", accepted)
    if len(ids) > MAX_READ_IDS:
        raise BadRequest("invalid_body", f"At most {MAX_READ_IDS} ids at once; send several requests.")
    if not all(type(i) is int and 0 < i < 2**63 for i in ids):
        raise BadRequest("invalid_body", f"'ids' must be a list of positive whole numbers. {accepted}")
    return ids


def parse_publish(body: bytes) -> dict[str, Any]:
    """The data of a topic message: ``{"data": {...}}``. BodyTooLarge past MAX_TOPIC_MESSAGE_BYTES."""
    accepted = 'Send a JSON object: {"data": {...}}, the message as a JSON object.'
    depth = conf.MAX_JSON_DEPTH
    payload = load_json(
        body, max_depth=depth + 1, accepted=accepted, limit_detail=f" ('data' {depth}, and its envelope)"
    )
    if not isinstance(payload, dict) or set(payload) != {"data"}:
        raise BadRequest("invalid_body", accepted)
    try:
        check_data(payload["data"])
    except TooDeep as error:
        raise BadRequest("too_deep", f"{error}. {accepted}") from None
    except TooLarge as error:
        raise BodyTooLarge(f"The message's {error}; send a smaller one.") from None
    except (TypeError, ValueError) as error:
        raise BadRequest("invalid_body", f"{error}. {accepted}") from None
    return payload["data"]
