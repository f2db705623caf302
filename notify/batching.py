"""One query for many held polls: the look-ups every idle poll makes, coalesced.

At 10,000 held polls a worker answers hundreds of idle re-polls a second, and each
used to make its own trip to the database threads for the same two questions: the
head of the user's stream (on arrival) and the unread count (on timeout). A trip
costs far more than its query: a thread hand-off, the ORM building the query, and
several waits for the GIL against the event loop. A ``Batch`` collects the
questions asked while the previous trip is under way and answers all of them with
one query (``WHERE user_id IN (...)``) in one trip, so the number of trips stays
small however many polls there are.

Order is kept where it matters: a poll asks only after its subscription is
confirmed, and the query that answers it starts after it asked.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from notify import db
from notify.compiled import MAX_IDS

K = TypeVar("K")
V = TypeVar("V")

# Keys in one query: well under SQLite's and PostgreSQL's limits on parameters.
CHUNK = MAX_IDS


class Batch(Generic[K, V]):
    """``await batch.get(key)``: ``fetch(keys) -> {key: value}`` run for many keys at once.

    One trip in flight at a time (per event loop); keys asked meanwhile go in the
    next. A key ``fetch`` leaves out gets ``default``.
    """

    def __init__(self, fetch: Callable[[list[K]], Mapping[K, V]], default: V) -> None:
        self.fetch = fetch
        self.default = default
        self._asked: dict[K, list[asyncio.Future[V]]] = {}
        # The task taking the trips while there are questions (held: the loop keeps
        # only weak references to tasks).
        self._drainer: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._asked.setdefault(key, []).append(future)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._asked:
            await asyncio.sleep(0)  # let the polls woken in this loop iteration ask too
            asked, self._asked = self._asked, {}
            try:
                values = await db.read(self._fetch_all, list(asked))
            except Exception as error:  # noqa: BLE001 - every asker gets it (503 for a DatabaseError)
                for futures in asked.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
                continue
            for key, futures in asked.items():
                value = values.get(key, self.default)
                for future in futures:
                    if not future.done():  # its poll may have been cancelled meanwhile
                        future.set_result(value)

    def _fetch_all(self, keys: list[K]) -> dict[K, V]:
        values: dict[K, V] = {}
        for start in range(0, len(keys), CHUNK):
            values.update(self.fetch(keys[start : start + CHUNK]))
        return values


_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Batch]] = weakref.WeakKeyDictionary()


async def ask(name: str, fetch: Callable[[list[K]], Mapping[K, V]], default: V, key: K) -> V:
    """``fetch``'s value for ``key``, fetched with every other key asked of the running
    loop's batch called ``name`` meanwhile."""
    return await batch(name, fetch, default).get(key)


def batch(name: str, fetch: Callable[[list[K]], Mapping[K, V]], default: V) -> Batch[K, V]:
    """The running loop's batch called ``name`` (futures belong to one loop: under
    WSGI, a loop per request, and so no coalescing there)."""
    per_loop = _batches.setdefault(asyncio.get_running_loop(), {})
    found = per_loop.get(name)
    if found is None:
        found = per_loop[name] = Batch(fetch, default)
    return found
