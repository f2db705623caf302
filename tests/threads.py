"""Threads for tests that do ORM work beside the test: each closes its database connections.

A thread that ends holding a connection keeps a session on the test database, and
PostgreSQL then refuses to drop it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections


def start(target: Callable[..., Any], *args: Any, delay: float = 0.0, **kwargs: Any) -> threading.Thread:
    def run() -> None:
        try:
            if delay:
                time.sleep(delay)
            target(*args, **kwargs)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
