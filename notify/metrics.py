"""Prometheus metrics of notify: every definition, and the one-line calls that feed them.

Off unless ``NOTIFY["METRICS"]`` is True: then each call below is one settings
look-up and a return, and prometheus_client is not even imported. On, the metrics
are built on first use, in the process that uses them.

Several worker processes add up when ``PROMETHEUS_MULTIPROC_DIR`` names a directory
they share (prometheus_client's multiprocess mode: each process writes its values to
files there, and the worker that serves ``/notify/metrics`` reads them all). It must be
set in the environment before the workers start, and emptied at each start of the
server. Unset, each process has its own registry and a scrape sees only the worker
that answers it. docs/metrics.md lists the metrics and how to run them.

Labels are bounded: outcomes, HTTP status codes and refusal codes, never a user, a
token or a topic.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any

from notify.conf import conf

# The directory of prometheus_client's multiprocess mode; None: one registry per process.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: from a millisecond up to a long poll's whole timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Recipients of one send (a broadcast to every user is the high end).
FANOUT_BUCKETS = (1, 2, 5, 10, 100, 1000, 10_000, 100_000, 1_000_000)


class _Metrics:
    """The metric objects, built once per process (prometheus_client registers each name once)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.polls_held = Gauge("notify_polls_held", "Polls held now, waiting for news.", multiprocess_mode="livesum")
        self.polls_answered = Counter(
            "notify_polls_answered",
            "Polls answered, by outcome: woken, found, snapshot, timed_out, drained, or the HTTP status of a refusal.",
            ["outcome"],
        )
        self.delivery_seconds = Histogram(
            "notify_delivery_seconds",
            "Seconds from a message's publish to the answer of the held poll it woke (same-host clocks).",
            buckets=LATENCY_BUCKETS,
        )
        self.notifications_published = Counter(
            "notify_notifications_published", "Notifications published to Redis after their commit."
        )
        self.topic_messages_published = Counter(
            "notify_topic_messages_published", "Topic messages published to Redis after their commit."
        )
        self.publish_recipients = Histogram(
            "notify_publish_recipients",
            "Recipients of one publish of notifications (one send() or broadcast).",
            buckets=FANOUT_BUCKETS,
        )
        self.redis_connected = Gauge(
            "notify_redis_connected",
            "Pub/sub hubs connected to Redis (one per worker event loop).",
            multiprocess_mode="livesum",
        )
        self.redis_reconnects = Counter(
            "notify_redis_reconnects", "Times a hub lost its Redis connection and started reconnecting."
        )
        self.redis_channels = Gauge(
            "notify_redis_channels",
            "Channels subscribed on Redis by the hubs (held polls' and lingering ones).",
            multiprocess_mode="livesum",
        )
        self.redis_confirm_seconds = Histogram(
            "notify_redis_confirm_seconds",
            "Seconds from sending a SUBSCRIBE to Redis confirming it.",
            buckets=LATENCY_BUCKETS,
        )
        self.db_seconds = Histogram(
            "notify_db_seconds",
            "Seconds of one database trip of notify's threads (the poll path), queueing included.",
            buckets=LATENCY_BUCKETS,
        )
        self.refusals = Counter("notify_refusals", "Requests refused by a rate limit or a cap, by code.", ["code"])
        # Labelled children, looked up once: labels() takes a lock and builds a key each call.
        self._answered: dict[str, Any] = {}
        self.draining = Gauge(
            "notify_draining",
            "Workers shutting down: answering held polls, holding no new ones.",
            multiprocess_mode="livesum",
        )

    def answered(self, outcome: str) -> Any:
        child = self._answered.get(outcome)
        if child is None:
            child = self._answered[outcome] = self.polls_answered.labels(outcome)
        return child


_metrics: _Metrics | None = None
_lock = threading.Lock()


def _get() -> _Metrics | None:
    """The metrics if NOTIFY["METRICS"] is on (built on first use), else None."""
    global _metrics
    if not conf.METRICS:
        return None
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
                if os.environ.get(MULTIPROC_DIR_VARIABLE):
                    atexit.register(process_dead)
    return _metrics


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR_VARIABLE))


def process_dead(pid: int | None = None) -> None:
    """Forget a worker's live gauges (held polls, hubs, channels, draining): at its exit, or
    called by a supervisor with the pid of a worker that died without exiting cleanly.
    LongPollRouter calls it at lifespan shutdown (a uvicorn worker may exit without running
    atexit handlers), and it is registered with atexit too."""
    if not (conf.METRICS and multiprocess()):
        return
    from prometheus_client import multiprocess as prometheus_multiprocess

    prometheus_multiprocess.mark_process_dead(os.getpid() if pid is None else pid)


def exposition() -> tuple[bytes, str]:
    """The text to answer a scrape with, and its content type: every worker's values in
    multiprocess mode, this process's otherwise."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    _get()  # the metrics exist (at zero) even before anything happened here
    if multiprocess():
        from prometheus_client import multiprocess as prometheus_multiprocess

        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# --- the calls at the call sites: each one line there, nothing when off ----------------


class _Held:
    """Counts a poll in notify_polls_held while the block runs."""

    __slots__ = ("gauge",)

    def __init__(self, gauge: Any) -> None:
        self.gauge = gauge

    def __enter__(self) -> None:
        self.gauge.inc()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.gauge.dec()


_nothing = nullcontext()


def holding() -> AbstractContextManager[None]:
    """``with metrics.holding():`` around a held poll's wait."""
    m = _get()
    return _nothing if m is None else _Held(m.polls_held)


def poll_answered(outcome: str) -> None:
    """A poll answered: "snapshot", or the HTTP status of a refusal ("400", "429", "503", ...)."""
    m = _get()
    if m is not None:
        m.answered(outcome).inc()


def held_poll_answered(news: bool, waited: bool, draining: bool, heard: Iterable[Iterable[bytes | str]]) -> None:
    """A held poll about to answer: with ``news`` (after waiting: "woken", else "found" by its
    check) or without (at shutdown "drained", else "timed_out"). ``heard``: the messages of its
    last wake-up, whose publish times give notify_delivery_seconds."""
    m = _get()
    if m is None:
        return
    outcome = ("woken" if waited else "found") if news else ("drained" if draining else "timed_out")
    m.answered(outcome).inc()
    if news and waited:
        published = earliest_stamp(heard)
        if published is not None:
            m.delivery_seconds.observe(max(0.0, time.time() - published))


def stamp() -> bytes:
    """What a published message's seq field carries after its number when metrics are on:
    ``@`` and the publish time in Unix milliseconds (notify.pages.message)."""
    if not conf.METRICS:
        return b""
    return b"@%d" % int(time.time() * 1000)


def earliest_stamp(heard: Iterable[Iterable[bytes | str]]) -> float | None:
    """The earliest publish time (Unix seconds) among messages that carry one, or None."""
    earliest: float | None = None
    for messages in heard:
        for raw in messages:
            data = raw.encode() if isinstance(raw, str) else raw
            seq_field = data.split(b" ", 1)[0]
            _, at, millis = seq_field.partition(b"@")
            if at and millis.isdigit():
                seconds = int(millis) / 1000
                if earliest is None or seconds < earliest:
                    earliest = seconds
    return earliest


def notifications_published(count: int) -> None:
    m = _get()
    if m is not None:
        m.notifications_published.inc(count)
        m.publish_recipients.observe(count)


def topic_message_published() -> None:
    m = _get()
    if m is not None:
        m.topic_messages_published.inc()


def hub_connected() -> None:
    m = _get()
    if m is not None:
        m.redis_connected.inc()


def hub_disconnected(was_connected: bool, closing: bool, channels: int) -> None:
    """A hub's connection ended, with ``channels`` subscribed on it: ``was_connected``, it had
    been up; unless ``closing``, it reconnects."""
    m = _get()
    if m is not None and was_connected:
        m.redis_connected.dec()
        m.redis_channels.dec(channels)
        if not closing:
            m.redis_reconnects.inc()


def hub_channels(change: int) -> None:
    """Channels were subscribed (``change`` > 0) or unsubscribed (< 0) on a hub's connection."""
    m = _get()
    if m is not None and change:
        m.redis_channels.inc(change)


def subscribe_confirmed(seconds: float) -> None:
    m = _get()
    if m is not None:
        m.redis_confirm_seconds.observe(seconds)


def db_trip(started: float) -> None:
    """A database trip that started at ``started`` (``time.perf_counter()``) ended."""
    m = _get()
    if m is not None:
        m.db_seconds.observe(time.perf_counter() - started)


def refused(code: str) -> None:
    """A rate limit or cap refused a request (LimitExceeded's code, e.g. "too_many_polls")."""
    m = _get()
    if m is not None:
        m.refusals.labels(code).inc()


def draining() -> None:
    m = _get()
    if m is not None:
        m.draining.set(1)
