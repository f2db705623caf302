"""Answering held polls when the server shuts down.

On SIGTERM uvicorn stops accepting, then waits for running requests to finish —
for a held poll up to its whole timeout, or for ever without
``--timeout-graceful-shutdown`` — and only then sends lifespan ``shutdown``. So
the lifespan event comes too late to help, and some servers send none (daphne).
Instead ``LongPollRouter`` chains a signal handler in front of the server's, at
lifespan startup or else at its first poll: it makes every held poll answer at
once (200, no notifications, the same cursor) so clients move on to another
worker, and hands the signal on once those answers are sent.

Why wait for the answers before handing the signal on: what the server does with
it varies. uvicorn and granian stop accepting and wait for running requests;
Twisted (daphne) stops its reactor and cancels them; and a process with no
handler at all (a hypercorn worker: its master tells it to stop through a
multiprocessing event, not a signal) would simply die. The wait is bounded by
``GRACE`` seconds, and a second signal is handed on at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from notify import metrics

logger = logging.getLogger("notify")

# The longest a signal is held back while held polls are answered.
GRACE = 1.0

_draining = False
_installed = False
# The polls LongPollRouter is serving, until their answer is sent (notify.asgi).
serving: set[asyncio.Task[Any]] = set()


def draining() -> bool:
    """True once this process has been asked to stop: polls answer without waiting."""
    return _draining


def start_draining() -> None:
    global _draining
    if _draining:
        return
    _draining = True
    metrics.draining()
    from notify.broker import wake_everyone

    woken = wake_everyone()
    logger.info("notify: shutting down; answered %d held poll(s)", woken)


def install_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    """Drain held polls on SIGTERM / SIGINT, then call the handler already installed."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if previous in (signal.SIG_IGN, None):
            continue  # ignored stays ignored; None: a handler not installed from Python, left alone
        signal.signal(signum, _chained(loop, previous))


def _chained(loop: asyncio.AbstractEventLoop, previous: Any) -> Callable[[int, FrameType | None], None]:
    """The handler put in front of ``previous`` (a callable, or SIG_DFL)."""

    def handler(received: int, frame: FrameType | None) -> None:
        if _draining or loop.is_closed():
            _hand_on(received, previous)  # a second signal: no more waiting
            return
        try:
            loop.call_soon_threadsafe(_drain_then_hand_on, received, previous)
        except RuntimeError:  # the loop closed meanwhile
            _hand_on(received, previous)

    return handler


def _drain_then_hand_on(received: int, previous: Any) -> None:
    """In the server's loop: wake every held poll, and hand the signal on when they have answered."""
    loop = asyncio.get_running_loop()
    held = [task for task in serving if task.get_loop() is loop and not task.done()]
    start_draining()
    handed = False

    def once() -> None:
        nonlocal handed
        if not handed:
            handed = True
            _hand_on(received, previous)

    if not held:
        once()
        return

    async def wait_then_hand_on() -> None:
        try:
            await asyncio.wait(held, timeout=GRACE)
        finally:
            once()

    task = loop.create_task(wait_then_hand_on(), name="notify-drain")
    _keep.add(task)
    task.add_done_callback(_keep.discard)


_keep: set[asyncio.Task[None]] = set()  # the drain tasks, until done (the loop keeps only weak references)


def _hand_on(received: int, previous: Any) -> None:
    """What the process would have done with the signal without notify."""
    if callable(previous):
        previous(received, None)
        return
    # SIG_DFL: the default action, which for SIGTERM and SIGINT ends the process.
    with contextlib.suppress(ValueError):  # not the main thread: nothing to restore from here
        signal.signal(received, signal.SIG_DFL)
    signal.raise_signal(received)
