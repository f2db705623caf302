"""The HTTP face: parse and validate, authenticate, wait, answer. See README for the contract."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from notify import batching, db, lifecycle, multipoll, streams, topics
from notify.auth import (
    Credential,
    NotAuthenticated,
    authenticate,
    authenticate_credential,
    credential_of,
    forget_hint,
    identify,
    is_trusted,
    listening,
    remember,
    still_authenticated,
    verified_user_id,
)
from notify.broker import get_broker
from notify.conf import conf
from notify.limits import poll_limiter
from notify.multipoll import StreamError
from notify.pages import AUTH_CHANGED, Page, TopicPage, notification_json, page_from_messages
from notify.params import (
    INBOX,
    BadRequest,
    parse_poll,
    parse_publish,
    parse_read,
    parse_streams,
    parse_topic,
    query_of,
    too_many_fields,
)

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


# What a view answers with a JSON error (400, 401, 403/410 of a stream, 503);
# anything else is a bug, and a 500.
ANSWERED = (BadRequest, NotAuthenticated, StreamError, DatabaseError)


def answer_error(problem: Exception, *, multi: bool = False) -> JsonResponse:
    """The JSON answer to one of ``ANSWERED``; ``multi``: a multi-stream poll's."""
    if isinstance(problem, BadRequest):
        return error(400, problem.code, problem.detail)
    if isinstance(problem, NotAuthenticated):
        return not_authenticated(problem.detail)
    if isinstance(problem, StreamError):
        return stream_error(problem, multi=multi)
    if isinstance(problem, DatabaseError):
        return database_unavailable(problem)
    raise problem


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
        return answer_error(problem)
    if "streams" in query:
        return await answer_streams(request)
    try:
        params = parse_poll(request.GET)
        credential = credential_of(request)
        # A held poll keeps only its parameters and credential, not the request
        # (its META, headers, query dict): at 10,000 held polls each kilobyte
        # kept per poll is 10 MB.
        del request
        # A held poll verifies its credential once subscribed (hold), so it may
        # start from a hint; an answer given at once is verified first.
        if params.after is None:
            user_id = await authenticate_credential(credential)
        else:
            user_id = await identify(credential)
    except ANSWERED as problem:
        return answer_error(problem)

    try:
        if params.after is None:
            return page_response(await snapshot(user_id, params.limit))

        refused = refuse_hold(user_id)
        if refused is not None:
            return refused
        try:
            return page_response(await hold(credential, user_id, params.after, params.limit, params.timeout))
        finally:
            poll_limiter.release(user_id)
    except ANSWERED as problem:
        return answer_error(problem)


async def snapshot(user_id: int, limit: int) -> Page:
    """The head, the newest unread notifications up to it, and the unread count.

    The head is read first: whatever commits after it is past the returned cursor
    and so comes with the next poll. Head and count are read with other polls'
    (notify.batching); the notifications only if there are any unread.
    """
    head = await batching.head(user_id)
    unread = await batching.unread_count(user_id)
    notifications = await db.read(streams.newest_unread, user_id, head, limit) if unread else []
    return Page(head, [notification_json(n) for n in notifications], unread)


def refuse_hold(user_id: int) -> JsonResponse | None:
    """Count one more held poll (release it with ``poll_limiter.release``), or the answer refusing it."""
    refused = poll_limiter.acquire(user_id, conf.MAX_POLLS_PER_USER, conf.MAX_HELD_POLLS)
    if refused == "user":
        return error(
            429,
            "too_many_polls",
            f"This user already holds {conf.MAX_POLLS_PER_USER} polls; close one or wait for it to be answered.",
            **{"Retry-After": str(RETRY_AFTER)},
        )
    if refused == "process":
        return error(
            503,
            "server_busy",
            "This server holds as many polls as it can; try again shortly.",
            **{"Retry-After": str(RETRY_AFTER)},
        )
    return None


def page_response(page: Page | TopicPage) -> HttpResponse:
    return HttpResponse(page.body(), content_type="application/json", headers={"Cache-Control": "no-store"})


async def hold(credential: Credential, user_id: int, after: int, limit: int, timeout: float) -> Page:
    """What follows ``after``, waiting up to ``timeout`` seconds for it.

    Subscribe first, then check the database, then wait: a notification committed
    before the subscription is confirmed is found by the check, one committed after
    it wakes the wait. A wake-up whose messages continue the cursor without a gap
    is answered from them (see notify.pages); any other goes back to the database.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with get_broker().subscribe(conf.channel_for_user(user_id)) as subscription:
        await subscription.wait_ready(min(conf.SUBSCRIBE_TIMEOUT, timeout))
        subscription.clear()  # before the check, so that a publish during it still counts
        if multipoll._test_hook is not None:  # race tests only (see there)
            await multipoll._test_hook("subscribed", [subscription])
        # The credential is verified now that we listen (a revocation before this
        # published its "auth" message unheard), unless this worker verified it
        # recently and has heard every revocation since (notify.auth._Hints).
        now = listening()
        notifications: list[dict[str, Any]]
        head: int | None
        if subscription.ready.is_set() and is_trusted(credential, user_id, now):
            # The common case: the head, read with other polls' in one query.
            head = await batching.head(user_id)
            new_cursor, notifications = after, []
            if after < head:
                new_cursor, notifications = await db.read(streams.page_after, user_id, after, limit)
        else:
            # One trip to the database threads: the credential, and the page (or
            # the head, to validate the cursor, if there is nothing new).
            verified, new_cursor, notifications, head = await db.read(first_check, credential, user_id, after, limit)
            if not verified:
                forget_hint(credential)
                raise NotAuthenticated("The token was revoked or the session ended.")
            remember(credential, user_id, now)
        if head is not None and after > head:
            raise BadRequest(
                "invalid_cursor",
                "'after' is ahead of this user's newest notification: it was not issued "
                "for this user. Poll without 'after' to get a fresh cursor.",
            )
        if multipoll._test_hook is not None:
            await multipoll._test_hook("checked", [subscription])
        while not notifications:
            remaining = deadline - loop.time()
            if remaining <= 0 or lifecycle.draining():
                break
            if not subscription.ready.is_set():
                # Redis is not confirming: nothing may wake us, so look again soon.
                remaining = min(remaining, conf.RECHECK_INTERVAL)
            if not await subscription.wait(remaining) and subscription.ready.is_set():
                # Timed out, listening all along: nothing was published since the
                # check before waiting, so there is nothing new to look for.
                break
            if AUTH_CHANGED in subscription.messages and not await still_authenticated(
                credential, user_id, cached=False
            ):
                raise NotAuthenticated("The token was revoked or the session ended while this poll was held.")
            page = page_from_messages(subscription.messages, after, limit)
            if page is not None:
                return page
            subscription.clear()
            new_cursor, notifications = await db.read(streams.page_after, user_id, after, limit)
    unread = await batching.unread_count(user_id)
    return Page(new_cursor, [notification_json(n) for n in notifications], unread)


def first_check(
    credential: Credential, user_id: int, after: int, limit: int
) -> tuple[bool, int, list[dict[str, Any]], int | None]:
    """A held poll's first look, in one database thread call: is ``credential``
    still the user's? the stream's head, and the page after ``after`` if the
    head is past it. Synchronous.

    The head first: most held polls have nothing new, and then one primary-key
    look-up is the whole check. The poll is subscribed already, so whatever
    commits after the head was read wakes it.
    """
    if verified_user_id(credential) != user_id:
        return False, after, [], None
    head = streams.head(user_id)
    if after >= head:
        return True, after, [], head
    new_cursor, notifications = streams.page_after(user_id, after, limit)
    return True, new_cursor, notifications, head


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


@csrf_exempt  # enforced below for session auth only: a bearer token is not ambient
async def read(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return method_not_allowed("POST")
    try:
        query_of(request)  # refuses a flood of parameters, which nothing else here would read
        user_id, via = await authenticate(request)
        refused = await csrf_refusal(request, via)
        if refused is not None:
            return refused
        ids = parse_read(request.body)
        unread = await db.run(streams.mark_read, user_id, ids)
    except RequestDataTooBig:
        return error(413, "too_large", "The body is too large; send at most 1000 ids at once.")
    except ANSWERED as problem:
        return answer_error(problem)
    return answer({"unread_count": unread})


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


async def follow(
    credential: Credential, wanted: list[tuple[str, int | None]], limit: int, timeout: float
) -> dict[str, multipoll.Result] | JsonResponse:
    """Authenticate, then each stream's page: at once if a stream has no cursor, else held.

    Raises BadRequest, NotAuthenticated, StreamError, DatabaseError for the caller to answer.
    """
    if any(after is None for _, after in wanted):
        user_id = await authenticate_credential(credential)
        return await multipoll.snapshot(user_id, wanted, limit)
    # Held: start from the credential's hint; multipoll.hold verifies it once subscribed.
    user_id = await identify(credential)
    refused = refuse_hold(user_id)
    if refused is not None:
        return refused
    try:
        return await multipoll.hold(credential, user_id, wanted, limit, timeout)  # type: ignore[arg-type]  # every after is set here
    finally:
        poll_limiter.release(user_id)


@csrf_exempt  # GET only: it changes nothing
async def topic_poll(request: HttpRequest, name: str) -> HttpResponse:
    """A topic's poll as a Django view. ``notify.asgi.LongPollRouter`` serves the same without a thread."""
    return await answer_topic_poll(request, name)


async def answer_topic_poll(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        parse_topic(name)
        params = parse_poll(query_of(request))
        credential = credential_of(request)
        del request  # not kept while held (see answer_poll)
        results = await follow(credential, [(name, params.after)], params.limit, params.timeout)
    except ANSWERED as problem:
        return answer_error(problem)
    if isinstance(results, HttpResponse):
        return results
    result = results[name]
    return page_response(TopicPage(result.cursor, result.items))


async def answer_streams(request: HttpRequest) -> HttpResponse:
    """``GET /notify/poll?streams=inbox,room:42&after=inbox:5,room:42:17``: one poll, several streams."""
    try:
        params = parse_streams(query_of(request))
        credential = credential_of(request)
        del request  # not kept while held (see answer_poll)
        results = await follow(credential, params.streams, params.limit, params.timeout)
    except ANSWERED as problem:
        return answer_error(problem, multi=True)
    if isinstance(results, HttpResponse):
        return results
    parts = []
    for name, _ in params.streams:
        result = results[name]
        if name == INBOX:
            body = Page(result.cursor, result.items, result.unread or 0).body()
        else:
            body = TopicPage(result.cursor, result.items).body()
        parts.append(json.dumps(name).encode() + b":" + body)
    compound = ",".join(f"{name}:{results[name].cursor}" for name, _ in params.streams)
    payload = b'{"cursor":%s,"streams":{%s}}' % (json.dumps(compound).encode(), b",".join(parts))
    return HttpResponse(payload, content_type="application/json", headers={"Cache-Control": "no-store"})


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
        data = parse_publish(request.body)
        if not await db.run(topics.permitted, user_id, name, "post"):
            return error(403, "forbidden", f"You may not post to topic {name!r}.")
        message, seq = await db.run(_publish_as, user_id, name, data)
    except RequestDataTooBig:
        return error(413, "too_large", "The body is too large; send a smaller message.")
    except ANSWERED as problem:
        return answer_error(problem)
    return JsonResponse({"message": message, "cursor": str(seq)}, status=201, headers={"Cache-Control": "no-store"})


def _publish_as(user_id: int, name: str, data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    message = topics.publish(name, data, sender=user_id)
    return topics.message_dict(message), message.seq
