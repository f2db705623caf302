"""Answering held polls when the server shuts down.

On SIGTERM uvicorn stops accepting, then waits for running requests to finish —
for a held poll up to its whole timeout, or for ever without
``--timeout-graceful-shutdown`` — and only then sends lifespan ``shutdown``. So
the lifespan event comes too late to help. Instead ``LongPollRouter`` chains a
signal handler in front of the server's at lifespan startup: it makes every held
poll answer at once (200, no notifications, the same cursor) so clients move on
to another worker, then lets the server's own handler run.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

logger = logging.getLogger("notify")

_draining = False


def draining() -> bool:
    """True once this process has been asked to stop: polls answer without waiting."""
    return _draining


def start_draining() -> None:
    global _draining
    if _draining:
        return
    _draining = True
    from notify.broker import wake_everyone

    woken = wake_everyone()
    logger.info("notify: shutting down; answered %d held poll(s)", woken)


def install_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    """Drain held polls on SIGTERM / SIGINT, then call the handler already installed."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(received: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(start_draining)
            if callable(previous):
                previous(received, frame)
            elif previous == signal.SIG_DFL:
                signal.default_int_handler(received, frame) if received == signal.SIGINT else None

        signal.signal(signum, handler)
