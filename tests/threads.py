"""Threads for tests that do ORM work beside the test: each closes its database connections,
and re-raises its exception when joined.

A thread that ends holding a connection keeps a session on the test database, and
PostgreSQL then refuses to drop it. A thread's exception is raised again by
``join()`` in the test's own thread, where it fails the test with its traceback
(a sender's IntegrityError, not a poller's timeout 30 s later); it also still
reaches ``threading.excepthook``, so a thread nobody joins fails its test too
(pytest's PytestUnhandledThreadExceptionWarning, an error in this suite).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections


class Thread(threading.Thread):
    """A daemon thread whose ``join()`` raises what its target raised."""

    def __init__(self, target: Callable[..., Any], *args: Any, delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self._call = (target, args, kwargs)
        self.delay = delay
        self.error: BaseException | None = None
        self.result: Any = None  # what the target returned

    def run(self) -> None:
        target, args, kwargs = self._call
        try:
            if self.delay:
                time.sleep(self.delay)
            self.result = target(*args, **kwargs)
        except BaseException as error:
            self.error = error
            raise
        finally:
            connections.close_all()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread (up to ``timeout`` seconds); raise its exception if it failed."""
        super().join(timeout)
        if self.error is not None:
            raise self.error


def join_all(threads: list[Thread], timeout: float | None = None) -> list[Any]:
    """Join every thread (each up to ``timeout`` seconds); raise every exception they raised, together.
    What each returned, in order."""
    errors: list[Exception] = []
    for thread in threads:
        try:
            thread.join(timeout)
        except Exception as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup(f"{len(errors)} of {len(threads)} threads failed", errors)
    return [thread.result for thread in threads]


def start(target: Callable[..., Any], *args: Any, delay: float = 0.0, **kwargs: Any) -> Thread:
    thread = Thread(target, *args, delay=delay, **kwargs)
    thread.start()
    return thread
