"""LongPollRouter (notify/asgi.py) in-process: what it does with the scopes it does not serve."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest
from django.core.asgi import get_asgi_application

from notify import lifecycle
from notify.asgi import LongPollRouter

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
