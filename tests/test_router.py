"""LongPollRouter (notify/asgi.py) in-process: what it does with the scopes it does not serve."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.test import override_settings
from django.utils.deprecation import MiddlewareMixin

from notify import lifecycle
from notify.asgi import LongPollRouter
from notify.checks import check_poll_middleware
from notify.conf import conf

Message = MutableMapping[str, Any]


class Lifespan:
    """A server's side of a lifespan scope: startup, then shutdown once startup was answered."""

    def __init__(self) -> None:
        self.to_app: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[str] = []
        self.to_app.put_nowait({"type": "lifespan.startup"})

    async def receive(self) -> Message:
        return await self.to_app.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            self.to_app.put_nowait({"type": "lifespan.shutdown"})

    async def run(self, app: Any) -> None:
        await asyncio.wait_for(app({"type": "lifespan", "asgi": {"version": "3.0"}}, self.receive, self.send), 5)


@pytest.fixture
def installs(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.AbstractEventLoop]:
    """The loops notify's signal handlers are installed for (not really installed in pytest's process)."""
    calls: list[asyncio.AbstractEventLoop] = []
    monkeypatch.setattr(lifecycle, "install_signal_handlers", calls.append)
    return calls


async def test_lifespan_reaches_the_wrapped_application(installs: list[asyncio.AbstractEventLoop]) -> None:
    received: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            received.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    server = Lifespan()
    await server.run(LongPollRouter(app))

    assert received == ["lifespan.startup", "lifespan.shutdown"]
    assert server.sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert installs == [asyncio.get_running_loop()]  # notify's handlers, at startup


async def test_a_startup_failure_of_the_wrapped_application_reaches_the_server(
    installs: list[asyncio.AbstractEventLoop],
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    server = Lifespan()
    await server.run(LongPollRouter(app))

    assert server.sent == ["lifespan.startup.failed"]


async def test_djangos_application_refuses_lifespan_so_the_router_answers_it(
    installs: list[asyncio.AbstractEventLoop],
) -> None:
    django_app = get_asgi_application()
    with pytest.raises(ValueError, match="lifespan"):  # what the router stands in for
        await django_app({"type": "lifespan"}, Lifespan().receive, Lifespan().send)

    server = Lifespan()
    await server.run(LongPollRouter(django_app))

    assert server.sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert installs == [asyncio.get_running_loop()]


async def test_an_application_that_takes_startup_and_fails_is_answered_by_the_router(
    installs: list[asyncio.AbstractEventLoop],
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("lifespan? no")

    server = Lifespan()
    await server.run(LongPollRouter(app))

    assert server.sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert installs == [asyncio.get_running_loop()]


# --- middleware on router-served polls (NOTIFY["POLL_MIDDLEWARE"]) -------------------------------------------------

ORIGIN = "http://127.0.0.1:9"  # another origin than the server's
CORS = {
    "MIDDLEWARE": ["corsheaders.middleware.CorsMiddleware", *settings.MIDDLEWARE],
    "CORS_ALLOWED_ORIGINS": [ORIGIN],
    "CORS_EXPOSE_HEADERS": ["retry-after"],
}


@dataclass
class Answered:
    status: int
    headers: dict[str, str]
    body: bytes


async def get(app: Any, path: str, headers: dict[str, str]) -> Answered:
    """``GET path`` through the ASGI application ``app``, in this loop."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")] + [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    requested = False
    answered = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    await asyncio.wait_for(app(scope, receive, send), 10)
    start = sent[0]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return Answered(start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body)


CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "vary",
)


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("authenticated", [True, False], ids=["200", "401"])
async def test_a_router_served_poll_gets_cors_headers_as_cors_middleware_gives_them(
    authenticated: bool, alice: Any, token: str, installs: list[Any], close_hubs: None
) -> None:
    headers = {"origin": ORIGIN}
    if authenticated:
        headers["authorization"] = f"Bearer {token}"
    with override_settings(**CORS):
        router = LongPollRouter(get_asgi_application())
        routed = await get(router, "/notify/poll", headers)
        # The same poll through Django's own handler and the whole of MIDDLEWARE.
        django = await get(get_asgi_application(), "/notify/poll", headers)

    assert routed.status == django.status == (200 if authenticated else 401), (routed, django)
    assert routed.headers["access-control-allow-origin"] == ORIGIN
    assert {name: routed.headers.get(name) for name in CORS_HEADERS} == {
        name: django.headers.get(name) for name in CORS_HEADERS
    }
    assert json.loads(routed.body).keys() == json.loads(django.body).keys()


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
async def test_poll_middleware_follows_the_settings(
    alice: Any, token: str, installs: list[Any], close_hubs: None
) -> None:
    router = LongPollRouter(get_asgi_application())
    headers = {"origin": ORIGIN, "authorization": f"Bearer {token}"}
    assert "access-control-allow-origin" not in (await get(router, "/notify/poll", headers)).headers
    with override_settings(**CORS):
        assert (await get(router, "/notify/poll", headers)).headers["access-control-allow-origin"] == ORIGIN
        with override_settings(NOTIFY={**settings.NOTIFY, "POLL_MIDDLEWARE": []}):
            assert "access-control-allow-origin" not in (await get(router, "/notify/poll", headers)).headers


def test_poll_middleware_defaults_to_cors_middleware_when_middleware_has_it() -> None:
    assert conf.POLL_MIDDLEWARE == []
    with override_settings(**CORS):
        assert conf.POLL_MIDDLEWARE == ["corsheaders.middleware.CorsMiddleware"]
        with override_settings(NOTIFY={**settings.NOTIFY, "POLL_MIDDLEWARE": ["x.Y"]}):
            assert conf.POLL_MIDDLEWARE == ["x.Y"]


class SyncOnlyMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)


class HookMiddleware(MiddlewareMixin):
    def process_response(self, request: Any, response: Any) -> Any:
        return response


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, None),
        (["corsheaders.middleware.CorsMiddleware"], None),
        ("corsheaders.middleware.CorsMiddleware", "notify.E014"),
        (["no.such.Middleware"], "notify.E014"),
        ([f"{__name__}.SyncOnlyMiddleware"], "notify.E014"),
        ([f"{__name__}.HookMiddleware"], "notify.W003"),
    ],
)
def test_poll_middleware_check(value: Any, problem: str | None) -> None:
    ids = [found.id for found in check_poll_middleware(value)]
    assert ids == ([problem] if problem else [])
