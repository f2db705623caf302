"""Helpers for tests/test_client.py: a scripted stand-in for the server, and a client iterated in a task."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from notify.client import Notification, NotifyClient

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


def notification(id: int, title: str = "") -> dict[str, Any]:
    return {
        "id": id,
        "title": title or f"n{id}",
        "body": "",
        "level": "info",
        "url": "",
        "data": {},
        "created_at": "2026-01-01T00:00:00+00:00",
        "read": False,
    }


def page(cursor: str, *ids: int) -> Answer:
    """Answer a poll with these notifications and this cursor, at once."""

    async def answer(request: web.Request) -> web.StreamResponse:
        body = {"cursor": cursor, "notifications": [notification(i) for i in ids], "unread_count": len(ids)}
        return web.json_response(body)

    return answer


def refuse(status: int, code: str, retry_after: str | None = None, body: str | None = None) -> Answer:
    """Answer with an error, in the contract's JSON unless ``body`` says otherwise."""

    async def answer(request: web.Request) -> web.StreamResponse:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if body is not None:
            return web.Response(status=status, text=body, content_type="text/html", headers=headers)
        return web.json_response({"error": code, "detail": f"Scripted {code}."}, status=status, headers=headers)

    return answer


def hang(seconds: float) -> Answer:
    """Say nothing for this long, like a server on the far side of a dropped connection."""

    async def answer(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response({"cursor": "0", "notifications": [], "unread_count": 0})

    return answer


async def hold_empty(request: web.Request) -> web.StreamResponse:
    """What the real server does when nothing comes: hold for ``timeout``, then an empty page, same cursor."""
    await asyncio.sleep(float(request.query.get("timeout", "25")))
    return web.json_response({"cursor": request.query.get("after", "0"), "notifications": [], "unread_count": 0})


@dataclass
class Poll:
    started: float  # time.monotonic() when the request arrived
    query: dict[str, str]
    authorization: str | None


@dataclass
class FakeNotify:
    """A notify server on loopback that answers polls as scripted, then holds them empty."""

    answers: list[Answer]
    polls: list[Poll] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/notify/poll", self._poll)
        # handler_cancellation: a poll the client gave up on ends at once, so cleanup does not wait on it.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        self.polls.append(Poll(time.monotonic(), dict(request.query), request.headers.get("Authorization")))
        answer = self.answers.pop(0) if self.answers else hold_empty
        return await answer(request)


class Collector:
    """Iterates a client in a task of its own and keeps what it yields, with when it came."""

    def __init__(self, client: NotifyClient) -> None:
        self.client = client
        self.received: list[Notification] = []
        self.arrived: list[float] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for notification in self.client:
            self.received.append(notification)
            self.arrived.append(time.monotonic())

    @property
    def titles(self) -> list[str]:
        return [n["title"] for n in self.received]

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Notification]:
        await until(lambda: len(self.received) >= count, timeout, self.task)
        return self.received


async def until(condition: Callable[[], object], timeout: float = 15.0, task: asyncio.Task[Any] | None = None) -> None:
    """Wait for ``condition``; raise at once what ``task`` raised if it ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if task is not None and task.done():
            task.result()
            raise AssertionError("the client stopped before the condition held")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def following(url: str, token: str, **options: Any) -> AsyncIterator[tuple[NotifyClient, Collector]]:
    """A client iterated in a task; on exit it is stopped and the task awaited."""
    async with NotifyClient(url, token, **options) as client:
        collector = Collector(client)
        try:
            yield client, collector
        finally:
            client.stop()
            await asyncio.wait({collector.task})


def json_line(raw: bytes) -> dict[str, Any]:
    assert raw.endswith(b"\n"), raw
    return json.loads(raw)
