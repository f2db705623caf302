"""Validating what a client sends, with errors that say what is accepted."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.http import QueryDict

from notify import cursor
from notify.conf import conf

_NUMBER = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,9})?")
_INTEGER = re.compile(r"-?[0-9]{1,9}")
MAX_READ_IDS = 1000


class BadRequest(Exception):
    """Client input we refuse; ``detail`` says what is wrong and what is accepted."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class PollParams:
    after: int | None
    timeout: float
    limit: int


def parse_poll(query: QueryDict) -> PollParams:
    after = None
    raw_after = query.get("after")
    if raw_after is not None and raw_after != "":
        try:
            after = cursor.decode(raw_after)
        except cursor.InvalidCursor as error:
            raise BadRequest("invalid_cursor", str(error)) from None
    return PollParams(after=after, timeout=_timeout(query.get("timeout")), limit=_limit(query.get("limit")))


def _timeout(raw: str | None) -> float:
    maximum = conf.MAX_TIMEOUT
    if raw is None or raw == "":
        return min(conf.DEFAULT_TIMEOUT, maximum)
    if not _NUMBER.fullmatch(raw):
        raise BadRequest(
            "invalid_timeout",
            f"'timeout' must be a number of seconds such as 25 or 2.5 (at most {maximum:g} "
            f"is used), got {raw[:40]!r}.",
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
        raise BadRequest(
            "invalid_limit", f"'limit' must be a whole number from 1 to {maximum}, got {raw[:40]!r}."
        )
    return int(raw)


def parse_read(body: bytes) -> list[int] | None:
    """The ids to mark read, or None for all: ``{"ids": [1, 2]}`` or ``{"all": true}``."""
    accepted = 'Send a JSON object: {"ids": [<notification id>, ...]} or {"all": true}.'
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid_json", f"The body is not valid JSON. {accepted}") from None
    if not isinstance(payload, dict):
        raise BadRequest("invalid_body", f"The body must be a JSON object. {accepted}")
    if payload.get("all") is True and "ids" not in payload:
        return None
    ids = payload.get("ids")
    if not isinstance(ids, list) or "all" in payload:
        raise BadRequest("invalid_body", accepted)
    if len(ids) > MAX_READ_IDS:
        raise BadRequest("invalid_body", f"At most {MAX_READ_IDS} ids at once; send several requests.")
    if not all(type(i) is int and 0 < i < 2**63 for i in ids):
        raise BadRequest("invalid_body", f"'ids' must be a list of positive whole numbers. {accepted}")
    return ids
