"""An asyncio client for notify's long-polling HTTP API; imports no Django.

::

    from notify.client import NotifyClient

    async with NotifyClient("http://127.0.0.1:8000", token) as client:
        async for notification in client:
            print(notification["title"])

From a shell, ``python -m notify.client --url http://127.0.0.1:8000 --token ...``
prints notifications as JSON lines. Needs aiohttp.

Several streams in one held poll (the user's notifications and topics)::

    async with NotifyClient(url, token, streams=["inbox", "room:42"]) as client:
        async for stream, item in client:
            print(stream, item)
"""

from __future__ import annotations

from notify.client.client import NotifyClient
from notify.client.errors import (
    AuthenticationError,
    CursorExpiredError,
    InvalidCursorError,
    NotifyError,
    ProtocolError,
    RequestError,
    TransientError,
)
from notify.client.responses import Notification, NotificationGroup, Page, StreamItem, StreamsPage, replaces

__all__ = [
    "AuthenticationError",
    "CursorExpiredError",
    "InvalidCursorError",
    "Notification",
    "NotificationGroup",
    "NotifyClient",
    "NotifyError",
    "Page",
    "ProtocolError",
    "RequestError",
    "StreamItem",
    "StreamsPage",
    "TransientError",
    "replaces",
]
