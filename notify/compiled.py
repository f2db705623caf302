"""ORM queries over a list of ids, compiled to SQL once and run many times.

The poll path's hottest queries (each user's head, each user's unread count) are
tiny, yet building and compiling them with the ORM costs 250-550 µs a time against
40 µs to execute them (measured on SQLite, see docs/benchmarks.md): at hundreds of
polls a second that was most of a worker's CPU. The queries are still written
with the ORM, once; what is cached is Django's own SQL for them, per database
and per length of the id list (rounded up to a power of two, padded with a
repeated id, so that a few shapes cover every batch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.apps import apps
from django.db import connections, router
from django.db.models import QuerySet

# The most ids in one query (callers chunk above it).
MAX_IDS = 512


class CompiledQuery:
    """``query(ids)``: the rows of ``build(ids)``, a QuerySet of ``model`` filtered on ``ids``.

    The ids must be plain parameters of the query (an ``__in`` lookup); checked
    when it is compiled.
    """

    def __init__(self, model: str, build: Callable[[list[int]], QuerySet[Any]]) -> None:
        self.model = model  # "app_label.ModelName": resolved at first use, not at import
        self.build = build
        self._compiled: dict[tuple[str, int], tuple[str, list[Any], list[tuple[int, int]]]] = {}
        self._lock = threading.Lock()

    def __call__(self, ids: Sequence[int], *, using: str | None = None) -> list[tuple[Any, ...]]:
        """The rows, as the database answers them (no field converters: SQLite answers booleans
        as 0 and 1); ``using``: the database alias, else the router's for reading."""
        if not ids:
            return []
        if len(ids) > MAX_IDS:
            raise ValueError(f"at most {MAX_IDS} ids in one query, not {len(ids)}")
        size = 1 << (len(ids) - 1).bit_length()
        padded = [*ids, *[ids[0]] * (size - len(ids))]
        alias = using or router.db_for_read(apps.get_model(self.model))
        sql, params, slots = self._compile(alias, size)
        params = list(params)
        for position, index in slots:
            params[position] = padded[index]
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def _compile(self, alias: str, size: int) -> tuple[str, list[Any], list[tuple[int, int]]]:
        key = (alias, size)
        compiled = self._compiled.get(key)
        if compiled is None:
            # Distinct stand-ins, to find where each id goes among the parameters.
            stand_ins = [-(i + 1) for i in range(size)]
            queryset = self.build(stand_ins)
            sql, params = queryset.query.get_compiler(using=alias).as_sql()
            where = {value: index for index, value in enumerate(stand_ins)}
            slots = [(position, where[value]) for position, value in enumerate(params) if value in where]
            if sorted(index for _, index in slots) != list(range(size)):
                raise RuntimeError(f"cannot compile {queryset.query}: the ids are not plain parameters")
            compiled = (sql, list(params), slots)
            with self._lock:
                self._compiled[key] = compiled
        return compiled
