"""Run the poll path's ORM work in a small pool of threads of our own.

Django's ``sync_to_async`` runs ORM calls in a thread that belongs to the request
and lives as long as it does: a held poll would keep a thread, which is the very
cost long polling is blamed for. These threads are shared by all requests of the
process, and each keeps its database connection between calls the way a request
thread does (``close_old_connections`` honours CONN_MAX_AGE and drops broken ones).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from django.db import DatabaseError, close_old_connections

from notify.conf import conf

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=conf.DB_THREADS, thread_name_prefix="notify-db")
        return _executor


def _call(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    finally:
        close_old_connections()


class DatabaseTimeout(DatabaseError):
    """A query on the poll path took longer than NOTIFY['DB_TIMEOUT']."""


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Await ``fn(*args)`` run in one of the pool's threads, for at most DB_TIMEOUT seconds.

    On timeout the caller moves on (and answers 503); the thread finishes its query
    in the background, as a query cannot be interrupted from here.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(_get_executor(), partial(_call, fn, *args))
    try:
        async with asyncio.timeout(conf.DB_TIMEOUT):
            return await future
    except TimeoutError:
        raise DatabaseTimeout(f"{getattr(fn, '__name__', fn)} took over {conf.DB_TIMEOUT:g} s") from None
