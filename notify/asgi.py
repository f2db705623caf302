"""Serve held polls without a thread each: an ASGI wrapper around Django's application.

Django's ASGIHandler runs every request in a ``ThreadSensitiveContext``; the first
synchronous call inside it (the ``request_started`` receivers, any
``MiddlewareMixin`` middleware, ``request.auser()``) starts a thread that lives as
long as the request. For a poll held 25 seconds that is a thread per waiting
client, the very cost long polling is blamed for.

``LongPollRouter`` answers ``GET`` requests for the poll URLs (the inbox's and
the topics') itself, with Django's
request object, session engine, authentication backends and ORM (run in
``notify.db``'s shared threads), and hands every other request to Django
unchanged. What a poll served this way skips: the ``request_started`` /
``request_finished`` signals, and the middleware stack except the async-capable
middleware named by ``NOTIFY["POLL_MIDDLEWARE"]`` (by default those of
``MIDDLEWARE`` without which an answer is unusable: django-cors-headers'
``CorsMiddleware``, or a cross-origin client cannot read it). The router builds
that chain as Django builds its own, with the poll's answer innermost, once, and
again when the settings change. A project whose other middleware must see polls
can leave the wrapper out and still be correct, at a thread per held poll.
"""

from __future__ import annotations

import asyncio
import io
import logging
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import DisallowedHost, ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.asgi import ASGIRequest, get_script_prefix
from django.core.signals import setting_changed
from django.http import HttpResponse
from django.urls import Resolver404, get_resolver, set_script_prefix
from django.utils.module_loading import import_string

from notify import dashboard, lifecycle, metrics, topics, views
from notify.conf import conf

logger = logging.getLogger("notify")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answer = Callable[[ASGIRequest], Awaitable[HttpResponse]]


class LongPollRouter:
    """``application = LongPollRouter(get_asgi_application())`` in your asgi.py."""

    def __init__(self, django_app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.django_app = django_app
        self._polls: dict[str, Answer | None] = {}
        self._signals_installed = False
        self._middleware: Answer | None = None  # POLL_MIDDLEWARE around the poll's answer, None: none
        self._middleware_built = False
        _routers.add(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.poll_answer(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if answer is not None:
            await self.serve_poll(scope, receive, send, answer)
        elif scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
        else:
            await self.django_app(scope, receive, send)

    def poll_answer(self, scope: Scope) -> Answer | None:
        """What answers this path if it is a poll URL (the inbox's or a topic's), else None."""
        path = scope["path"]
        if path in self._polls:
            return self._polls[path]
        prefix = get_script_prefix(scope)
        path_info = path.removeprefix(prefix) if prefix else path  # as ASGIRequest does
        answer: Answer | None = None
        try:
            match = get_resolver().resolve(path_info)
        except Resolver404:
            pass
        else:
            if match.func is views.poll:
                answer = views.answer_poll
            elif match.func is views.topic_poll:
                answer = partial(views.answer_topic_poll, **match.kwargs)
        # Few real paths, but one per topic: don't grow without bound on topics or junk.
        if len(self._polls) < 1000:
            self._polls[path] = answer
        return answer

    async def serve_poll(self, scope: Scope, receive: Receive, send: Send, answer: Answer) -> None:
        if not self._signals_installed:
            # At lifespan startup already, unless the server sends no lifespan (daphne)
            # or was told not to: then here, before the first poll is held.
            lifecycle.install_signal_handlers(asyncio.get_running_loop())
            self._signals_installed = True
            dashboard.start(topics.apublish)  # the admin dashboard's figures of this worker, once watched
        set_script_prefix(get_script_prefix(scope))
        request = ASGIRequest(scope, io.BytesIO())
        try:
            request.get_host()
        except DisallowedHost:
            await send_response(send, views.error(400, "bad_host", "This host name is not allowed here."))
            return
        if not self._middleware_built:
            self._middleware = poll_middleware()
            self._middleware_built = True
        # Not kept in this frame while the poll is held: the view keeps only what it
        # needs (notify.views.answer_poll), and 10,000 held requests add up. (Middleware
        # in POLL_MIDDLEWARE does keep it, a few KB per held poll.)
        if self._middleware is None:
            answering = answer(request)
        else:
            _answer.set(answer)
            answering = self._middleware(request)
        del request
        # The poll stops the moment the client goes away: its waiter and subscription
        # are freed, as under Django's own handler. One watcher task per poll; the
        # poll itself runs in this task (no second task, no asyncio.wait).
        this = asyncio.current_task()
        assert this is not None
        # Until its answer is sent: on SIGTERM the server's own handler waits for it.
        lifecycle.serving.add(this)
        try:
            watcher = asyncio.ensure_future(cancel_when_gone(receive, this))
            try:
                response = await answering
            except asyncio.CancelledError:
                if watcher.done() and not watcher.cancelled():
                    this.uncancel()  # the client left: nobody to answer, nothing to propagate
                    return
                raise
            except Exception as exception:  # noqa: BLE001 - a bug: answer 500, keep serving
                response = server_error(exception)
            finally:
                watcher.cancel()
            await send_response(send, response)
        finally:
            lifecycle.serving.discard(this)

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward the lifespan scope to the wrapped application, installing notify's
        signal handlers at startup; answer it here if the application takes no lifespan.

        Django's ASGIHandler raises on a lifespan scope. The ASGI spec reads an
        exception raised before the application has sent anything as "lifespan not
        supported": then (or if it returns having sent nothing) the router answers
        startup and shutdown itself, so that servers need not guess.
        """
        unanswered: list[MutableMapping[str, Any]] = []  # what the application received
        sent = False

        async def receive_lifespan() -> MutableMapping[str, Any]:
            message = await receive()
            if message["type"] == "lifespan.startup":
                lifecycle.install_signal_handlers(asyncio.get_running_loop())
                self._signals_installed = True
                dashboard.start(topics.apublish)  # the admin dashboard's figures of this worker, once watched
            elif message["type"] == "lifespan.shutdown":
                metrics.process_dead()  # this worker's live gauges leave the sums
                await dashboard.stop()
            unanswered.append(message)
            return message

        async def send_lifespan(message: MutableMapping[str, Any]) -> None:
            nonlocal sent
            sent = True
            await send(message)

        try:
            await self.django_app(scope, receive_lifespan, send_lifespan)
        except Exception as exception:
            if sent:
                raise
            logger.debug("notify: the application takes no lifespan (%r); LongPollRouter answers it", exception)
        if sent:
            return
        while True:
            if not unanswered:
                await receive_lifespan()
            message = unanswered.pop(0)
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


# The answer of the poll POLL_MIDDLEWARE's chain is running for (set in its task's context).
_answer: ContextVar[Answer] = ContextVar("notify_poll_answer")
_routers: weakref.WeakSet[LongPollRouter] = weakref.WeakSet()


async def answer_in_context(request: ASGIRequest) -> HttpResponse:
    """The innermost handler of POLL_MIDDLEWARE's chain: the poll's own answer. A failure
    becomes the 500 answer here, so that the middleware still sees a response (CORS
    headers on it, or the client cannot even read the error)."""
    try:
        return await _answer.get()(request)
    except Exception as exception:  # noqa: BLE001 - a bug: answer 500, keep serving
        return server_error(exception)


def poll_middleware() -> Answer | None:
    """POLL_MIDDLEWARE's chain around ``answer_in_context``, built as Django builds its own
    (the first listed outermost; MiddlewareNotUsed leaves one out); None if there is none."""
    handler: Answer = answer_in_context
    for path in reversed(conf.POLL_MIDDLEWARE):
        middleware = import_string(path)
        if getattr(middleware, "async_capable", False) is not True:
            raise ImproperlyConfigured(f"NOTIFY['POLL_MIDDLEWARE'] {path!r} is not async-capable (notify.E014).")
        try:
            wrapped = middleware(handler)
        except MiddlewareNotUsed:
            continue
        if not iscoroutinefunction(wrapped):
            raise ImproperlyConfigured(
                f"NOTIFY['POLL_MIDDLEWARE'] {path!r} did not turn async around an async handler (notify.E014)."
            )
        handler = wrapped
    return None if handler is answer_in_context else handler


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("NOTIFY", "MIDDLEWARE"):
        for router in list(_routers):
            router._middleware_built = False


setting_changed.connect(_settings_changed)


def server_error(exception: Exception) -> HttpResponse:
    logger.error("notify: poll failed", exc_info=exception)
    metrics.poll_answered("500")
    return views.error(500, "server_error", "The server failed to answer this poll.")


async def cancel_when_gone(receive: Receive, task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` (the poll) when the client disconnects."""
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()


async def send_response(send: Send, response: HttpResponse) -> None:
    headers = [(b"content-type", response["Content-Type"].encode())]
    headers += [
        (name.lower().encode(), value.encode()) for name, value in response.items() if name.lower() != "content-type"
    ]
    headers.append((b"x-content-type-options", b"nosniff"))
    headers.append((b"content-length", str(len(response.content)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
