"""How deeply JSON-like data nests, measured without recursion (NOTIFY["MAX_JSON_DEPTH"]).

Data past the limit is refused before anything is stored: json.dumps, the database's
JSON encoder and every answer that carries the data encode it recursively, so data
deep enough raises RecursionError there, after the row may already be written.
"""

from __future__ import annotations

from typing import Any


class TooDeep(ValueError):
    """Data nested deeper than NOTIFY["MAX_JSON_DEPTH"]."""


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether dicts and lists (and tuples) nest more than ``limit`` levels in ``value`` (``{}``: 1).

    Walked with a stack of its own, not by recursion, and stopped at the first value past
    the limit: data of any depth, even a dict that contains itself, is answered at once.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
