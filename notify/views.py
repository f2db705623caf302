"""The HTTP face: parse and validate, authenticate, wait, answer. See README for the contract."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from notify import cursor, db, metrics, polling, presence, topics
from notify.auth import NotAuthenticated, authenticate, credential_of
from notify.conf import conf
from notify.limits import LimitExceeded, count_publish, count_snapshot
from notify.params import (
    MAX_READ_IDS,
    BadRequest,
    BodyTooLarge,
    parse_poll,
    parse_publish,
    parse_read,
    parse_streams,
    parse_topic,
    query_of,
    too_many_fields,
)
from notify.streams import INBOX, StreamError
from notify.streams.inbox import mark_read

logger = logging.getLogger("notify")

# Retry-After for 429 and 503, in seconds.
RETRY_AFTER = 5


def error(status: int, code: str, detail: str, **headers: str) -> JsonResponse:
    return JsonResponse(
        {"error": code, "detail": detail},
        status=status,
        headers={"Cache-Control": "no-store", **headers},
    )


def answer(payload: dict[str, Any]) -> JsonResponse:
    return JsonResponse(payload, headers={"Cache-Control": "no-store"})


def method_not_allowed(allowed: str) -> JsonResponse:
    return error(405, "method_not_allowed", f"Use {allowed} for this URL.", Allow=allowed)


def not_authenticated(detail: str) -> JsonResponse:
    return error(401, "not_authenticated", detail, **{"WWW-Authenticate": 'Bearer realm="notify"'})


# What a view answers with a JSON error (400, 401, 403/410 of a stream, 429, 503);
# anything else is a bug, and a 500.
ANSWERED = (BadRequest, NotAuthenticated, StreamError, LimitExceeded, DatabaseError)


def answer_error(problem: Exception, *, multi: bool = False) -> JsonResponse:
    """The JSON answer to one of ``ANSWERED``; ``multi``: a multi-stream poll's."""
    if isinstance(problem, BadRequest):
        return error(400, problem.code, problem.detail)
    if isinstance(problem, NotAuthenticated):
        return not_authenticated(problem.detail)
    if isinstance(problem, StreamError):
        return stream_error(problem, multi=multi)
    if isinstance(problem, LimitExceeded):
        metrics.refused(problem.code)
        return error(problem.status, problem.code, problem.detail, **{"Retry-After": str(problem.retry_after)})
    if isinstance(problem, DatabaseError):
        return database_unavailable(problem)
    raise problem


def poll_refused(problem: Exception, *, multi: bool = False) -> JsonResponse:
    """``answer_error`` for a poll, counted in notify_polls_answered by its status."""
    response = answer_error(problem, multi=multi)
    metrics.poll_answered(str(response.status_code))
    return response


def database_unavailable(problem: DatabaseError) -> JsonResponse:
    # One line, not a traceback: during an outage every poll would log one.
    logger.warning("notify: database error on the poll path: %s", problem)
    return error(
        503, "unavailable", "The database is not answering; try again shortly.", **{"Retry-After": str(RETRY_AFTER)}
    )


@csrf_exempt  # GET only: it changes nothing
async def poll(request: HttpRequest) -> HttpResponse:
    """The poll as a Django view. ``notify.asgi.LongPollRouter`` serves the same without a thread."""
    return await answer_poll(request)


async def answer_poll(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        query = query_of(request)
    except BadRequest as problem:
        return poll_refused(problem)
    if "streams" in query:
        return await answer_streams(request)
    try:
        params = parse_poll(query)
        credential = credential_of(request)
        # A held poll keeps only its parameters and credential, not the request
        # (its META, headers, query dict): at 10,000 held polls each kilobyte
        # kept per poll is 10 MB.
        del request, query
        [(stream, result)] = await polling.poll(credential, [(INBOX, params.after)], params.limit, params.timeout)
    except ANSWERED as problem:
        return poll_refused(problem)
    return json_body(stream.body(result))


def json_body(body: bytes) -> HttpResponse:
    return HttpResponse(body, content_type="application/json", headers={"Cache-Control": "no-store"})


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF checks, answering with the reason of a failure instead of a 403 response."""

    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def _not_called(request: HttpRequest) -> HttpResponse:
    raise AssertionError("csrf_failure runs the middleware's checks only, never a view")


def csrf_failure(request: HttpRequest) -> str | None:
    """Why the request fails Django's CSRF check, or None if it passes."""
    check = _CsrfCheck(_not_called)
    check.process_request(request)
    # process_view answers what _reject returns, the reason (the stubs know only the 403 response).
    return cast("str | None", check.process_view(request, _not_called, (), {}))


@csrf_exempt  # enforced in authenticated_post for session auth only: a bearer token is not ambient
async def read(request: HttpRequest) -> JsonResponse:
    async def mark(user_id: int, body: bytes) -> dict[str, Any]:
        return {"unread_count": await db.run(mark_read, user_id, parse_read(body))}

    return await authenticated_post(request, mark, too_large_hint=f"send at most {MAX_READ_IDS} ids at once.")


async def authenticated_post(
    request: HttpRequest,
    handle: Callable[[int, bytes], Awaitable[dict[str, Any]]],
    *,
    too_large_hint: str = "",
) -> JsonResponse:
    """A POST that changes what a user has (read marks, history, preferences): a bounded query,
    the poll's authentication, Django's CSRF check for a session, and a body within
    DATA_UPLOAD_MAX_MEMORY_SIZE (413). ``handle(user_id, body)`` answers the JSON object;
    what it raises of ANSWERED is answered as that error."""
    if request.method != "POST":
        return method_not_allowed("POST")
    try:
        query_of(request)  # refuses a flood of parameters, which nothing else here would read
        user_id, via = await authenticate(request)
        refused = await csrf_refusal(request, via)
        if refused is not None:
            return refused
        return answer(await handle(user_id, request.body))
    except RequestDataTooBig:
        limit = f"The body is more than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)"
        return error(413, "too_large", f"{limit}; {too_large_hint}" if too_large_hint else f"{limit}.")
    except ANSWERED as problem:
        return answer_error(problem)


async def csrf_refusal(request: HttpRequest, via: str) -> JsonResponse | None:
    """403 if a session-authenticated POST fails Django's CSRF check (a bearer token is not ambient)."""
    if via != "session":
        return None
    try:
        reason = await db.run(csrf_failure, request)
    except TooManyFieldsSent:  # a form body past DATA_UPLOAD_MAX_NUMBER_FIELDS, parsed by the check
        raise too_many_fields("form body") from None
    if reason is None:
        return None
    return error(403, "csrf_failed", f"CSRF check failed: {reason}. Send the X-CSRFToken header.")


# --- topics and multi-stream polls (notify.topics, notify.multipoll) ------------------


def stream_error(problem: StreamError, *, multi: bool) -> JsonResponse:
    """A stream's refusal; in a multi-stream poll the body says which stream (``stream``)."""
    payload: dict[str, Any] = {"error": problem.code, "detail": problem.detail}
    if multi:
        payload["stream"] = problem.stream
    payload.update(problem.extra)
    return JsonResponse(payload, status=problem.status, headers={"Cache-Control": "no-store"})


@csrf_exempt  # GET only: it changes nothing
async def topic_poll(request: HttpRequest, name: str) -> HttpResponse:
    """A topic's poll as a Django view. ``notify.asgi.LongPollRouter`` serves the same without a thread."""
    return await answer_topic_poll(request, name)


async def answer_topic_poll(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        parse_topic(name)
        params = parse_poll(query_of(request), name)
        credential = credential_of(request)
        del request  # not kept while held (see answer_poll)
        [(stream, result)] = await polling.poll(credential, [(name, params.after)], params.limit, params.timeout)
    except ANSWERED as problem:
        return poll_refused(problem)
    return json_body(stream.body(result))


async def answer_streams(request: HttpRequest) -> HttpResponse:
    """``GET /notify/poll?streams=inbox,room:42&after=inbox:5,room:42:17``: one poll, several streams."""
    try:
        params = parse_streams(query_of(request))
        credential = credential_of(request)
        del request  # not kept while held (see answer_poll)
        answered = await polling.poll(credential, params.streams, params.limit, params.timeout)
    except ANSWERED as problem:
        return poll_refused(problem, multi=True)
    parts = b",".join(json.dumps(stream.name).encode() + b":" + stream.body(result) for stream, result in answered)
    compound = cursor.encode_compound((stream.name, result.cursor) for stream, result in answered)
    return json_body(b'{"cursor":%s,"streams":{%s}}' % (json.dumps(compound).encode(), parts))


@csrf_exempt  # enforced below for session auth only: a bearer token is not ambient
async def topic_publish(request: HttpRequest, name: str) -> JsonResponse:
    if request.method != "POST":
        return method_not_allowed("POST")
    try:
        query_of(request)  # refuses a flood of parameters, which nothing else here would read
        parse_topic(name)
        user_id, via = await authenticate(request)
        refused = await csrf_refusal(request, via)
        if refused is not None:
            return refused
        if presence.is_events_topic(name):
            return error(403, "forbidden", f"Topic {name!r} carries presence events, which notify writes itself.")
        data = parse_publish(request.body)
        if not await db.run(topics.permitted, user_id, name, "post"):
            return error(403, "forbidden", f"You may not post to topic {name!r}.")
        await count_publish(user_id, name)  # 429 past a rate limit (notify.limits)
        message, seq = await db.run(_publish_as, user_id, name, data)
    except RequestDataTooBig:
        return error(
            413,
            "too_large",
            f"The body is more than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE); "
            f"a message's data may be at most {conf.MAX_TOPIC_MESSAGE_BYTES} bytes as JSON "
            "(NOTIFY['MAX_TOPIC_MESSAGE_BYTES']).",
        )
    except BodyTooLarge as problem:  # before ANSWERED: a BadRequest, but a 413
        return error(413, problem.code, problem.detail)
    except ANSWERED as problem:
        return answer_error(problem)
    return JsonResponse({"message": message, "cursor": str(seq)}, status=201, headers={"Cache-Control": "no-store"})


@csrf_exempt  # GET only: it changes nothing
async def topic_presence(request: HttpRequest, name: str) -> JsonResponse:
    """``GET /notify/topics/<name>/presence``: who follows the topic now (notify.presence)."""
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        query_of(request)  # refuses a flood of parameters, which nothing else here would read
        parse_topic(name)
        if presence.is_events_topic(name):
            topic = name.removeprefix(presence.EVENTS_PREFIX)
            raise BadRequest(
                "invalid_topic", f"{name!r} is a topic's presence events; ask for the topic's presence: {topic!r}."
            )
        user_id, _ = await authenticate(request)
        if not conf.PRESENCE:
            return error(404, "presence_off", "Presence is off on this server (NOTIFY['PRESENCE']).")
        if not await db.run(topics.permitted, user_id, name, "read"):
            return error(403, "forbidden", f"You may not read topic {name!r}.")
        await count_snapshot(user_id, 1)  # answered at once, as a snapshot is: 429 past MAX_SNAPSHOTS_PER_SECOND
        await presence.sweep()  # the leaves of users no held poll's worker swept yet
        count, ids = await presence.members(name)
        users = await db.run(presence.users, ids)
    except presence.Unavailable:
        return error(
            503, "unavailable", "Presence is not answering; try again shortly.", **{"Retry-After": str(RETRY_AFTER)}
        )
    except ANSWERED as problem:
        return answer_error(problem)
    return answer({"topic": name, "count": count, "users": users, "events": presence.events_topic(name)})


def _publish_as(user_id: int, name: str, data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    message = topics.publish(name, data, sender=user_id)
    return topics.message_dict(message), message.seq
