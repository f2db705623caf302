"""Follow one poll from the ASGI entry to its answer and count what it crosses in notify/.

    .venv/bin/python bench/hops.py

Three polls, each through ``LongPollRouter`` as uvicorn would call it, in this
process, against the real Redis and a throw-away SQLite database: a held poll of a
bearer token and of a session cookie that the worker already trusts, each woken by
a notification, and a held poll of a session the worker has not verified yet. For
each it prints the notify modules entered, the file-to-file hops (a call from one
notify module into another), how often ``notify.auth`` is entered, and how often
the settings object is read. Only calls are counted (``sys.setprofile``), from the
moment the router is called until it has sent the answer. STYLE.md: "both should
shrink with every change, never grow". Not a timed benchmark, and not run by CI.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/hops.sqlite3"
    os.environ.setdefault("NOTIFY_CHANNEL_PREFIX", f"hops{os.getpid()}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class Tracer:
    """Counts calls that cross from one notify module into another."""

    def __init__(self) -> None:
        self.modules: Counter[str] = Counter()
        self.hops = 0
        self.conf_reads = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        callee = frame.f_globals.get("__name__", "")
        if not callee.startswith("notify"):
            return
        caller_frame = frame.f_back
        caller = caller_frame.f_globals.get("__name__", "") if caller_frame is not None else ""
        if callee == "notify.conf" and frame.f_code.co_name not in ("channel_for_user", "channel_for_topic"):
            self.conf_reads += frame.f_code.co_name == "_get"
        if caller != callee:
            self.modules[callee] += 1
            if caller.startswith("notify"):
                self.hops += 1


async def call(app: Any, path: str, query: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    gone.set()
    return sent[0]["status"], sent[1]["body"]


async def follow(app: Any, label: str, headers: list[tuple[bytes, bytes]], user: Any, *, woken: bool) -> None:
    import notify

    async def send_soon() -> None:
        await asyncio.sleep(0.3)
        await notify.asend(user, "hop")

    tracer = Tracer()
    sender = asyncio.ensure_future(send_soon()) if woken else None
    sys.setprofile(tracer)
    try:
        status, body = await call(app, "/notify/poll", f"after={await head(user)}&timeout=2", headers)
    finally:
        sys.setprofile(None)
    if sender is not None:
        await sender
    assert status == 200, body
    auth = sum(n for module, n in tracer.modules.items() if module.startswith("notify.auth"))
    print(
        f"{label:<34} modules {len(tracer.modules):>2}   hops {tracer.hops:>3}   "
        f"auth entered {auth:>2}   conf reads {tracer.conf_reads:>3}"
    )
    if os.environ.get("HOPS_VERBOSE"):
        print("   ", dict(tracer.modules.most_common()))


async def head(user: Any) -> int:
    from notify.models import Inbox

    found = await Inbox.objects.filter(user=user).values_list("last_seq", flat=True).afirst()
    return found or 0


async def main() -> None:
    from asgiref.sync import sync_to_async
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from notify.asgi import LongPollRouter
    from notify.models import ApiToken

    app = LongPollRouter(None)  # polls only: nothing reaches the wrapped application
    user = await sync_to_async(get_user_model().objects.create_user)(f"hops{os.getpid()}", password="pw")
    _, raw = await sync_to_async(ApiToken.issue)(user)
    browser = Client()
    await sync_to_async(browser.force_login)(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
    token_headers = [(b"authorization", f"Bearer {raw}".encode())]
    session_headers = [(b"cookie", cookie)]

    # The worker's hub, its auth channel confirmed: what a busy worker has.
    await call(app, "/notify/poll", "after=0&timeout=0.2", token_headers)
    await follow(app, "session, not yet verified (held)", session_headers, user, woken=True)
    for _ in range(3):  # verified during the auth epoch: trusted from now on
        await call(app, "/notify/poll", f"after={await head(user)}&timeout=0.1", token_headers)
        await call(app, "/notify/poll", f"after={await head(user)}&timeout=0.1", session_headers)
    await follow(app, "token, trusted (held, woken)", token_headers, user, woken=True)
    await follow(app, "session, trusted (held, woken)", session_headers, user, woken=True)
    await follow(app, "session, trusted (held, timed out)", session_headers, user, woken=False)


if __name__ == "__main__":
    setup()
    asyncio.run(main())
