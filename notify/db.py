"""Run the poll path's ORM work in a small pool of threads of our own.

Django's ``sync_to_async`` runs ORM calls in a thread that belongs to the request
and lives as long as it does: a held poll would keep a thread, which is the very
cost long polling is blamed for. These threads are shared by all requests of the
process, and there are only DB_THREADS of them for the life of the process, so each
keeps its database connection between calls whatever CONN_MAX_AGE says (that setting
is there to stop one connection per request thread piling up, which cannot happen
here): on SQLite, where CONN_MAX_AGE is 0 by default, opening a connection per query
was the largest cost of a poll. A pooled connection (PostgreSQL's "pool" option) is
still handed back after each call, as the pool is the cheaper keeper. Broken
connections are dropped after the call either way, as Django does after a request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from notify import metrics
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
        _tidy_connections()


def _call_again_if_broken(fn: Callable[..., T], *args: Any) -> T:
    """``_call`` for reads: once more, on a fresh connection, if the connection broke.

    After a database restart every thread's idle connection is dead and fails its
    next query; a read can simply be asked again instead of answering 503.
    """
    try:
        return _call(fn, *args)
    except (InterfaceError, OperationalError):
        # _call has closed what broke; a second failure is the database's, and raised.
        return _call(fn, *args)


def _tidy_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if getattr(connection, "pool", None) is None:
            connection.close_at = None  # persistent: see the module docstring
        connection.close_if_unusable_or_obsolete()


class DatabaseTimeout(DatabaseError):
    """A query on the poll path took longer than NOTIFY['DB_TIMEOUT']."""


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Await ``fn(*args)`` run in one of the pool's threads, for at most DB_TIMEOUT seconds.

    On timeout the caller moves on (and answers 503); the thread finishes its query
    in the background, as a query cannot be interrupted from here.
    """
    return await _in_thread(_call, fn, *args)


async def read(fn: Callable[..., T], *args: Any) -> T:
    """``run`` for ``fn`` that only reads (or is safe to repeat): asked once more on a
    fresh connection if its connection turns out to be broken."""
    return await _in_thread(_call_again_if_broken, fn, *args)


async def _in_thread(call: Callable[..., T], fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    future = loop.run_in_executor(_get_executor(), partial(call, fn, *args))
    try:
        async with asyncio.timeout(conf.DB_TIMEOUT):
            return await future
    except TimeoutError:
        raise DatabaseTimeout(f"{getattr(fn, '__name__', fn)} took over {conf.DB_TIMEOUT:g} s") from None
    finally:
        metrics.db_trip(started)
