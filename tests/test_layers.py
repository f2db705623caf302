"""The shape of notify/: dependencies point one way (docs/layout.md).

Read from the source, imports inside functions included: a function-level import
is still a dependency, and the way cycles used to hide (auth → batching → sending
→ broker → auth; models ↔ sending ↔ scheduling).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[1] / "notify"

# Each layer may import its own and lower layers only (a lower number).
LAYERS = {
    "settings": 0,  # notify.conf: the one settings object; notify.metrics: the counters every layer feeds
    "transport": 1,  # notify.broker: Redis, hubs, reconnects
    "data": 2,  # models, sending, scheduling, topics, cursor, pages, db, batching, lifecycle ...
    "identity": 3,  # notify.auth
    "streams": 4,  # notify.streams
    "engine": 5,  # notify.polling
    "edge": 6,  # views, history, asgi, params, urls, admin, commands, template tags, checks, the client, contrib
}


def layer(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top in ("conf", "metrics"):
        return "settings"
    if top == "broker":
        return "transport"
    if top == "auth":
        return "identity"
    if top == "streams":
        return "streams"
    if top == "polling":
        return "engine"
    if top in (
        "views",
        "asgi",
        "params",
        "urls",
        "admin",
        "forms",
        "management",
        "templatetags",
        "checks",
        "client",
        "history",
        "preference_views",
        "openapi",
        "contrib",
        "monitoring",
        "unsubscribe",
    ):
        return "edge"
    if top in ("", "apps"):
        return "edge"  # the package's lazy public face, the AppConfig
    return "data"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The notify modules ``name`` imports, anywhere in the file."""

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names if alias.name.startswith("notify"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            if base.startswith("notify"):
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in known else resolve(base))
    found.discard(None)
    found.discard(name)
    return {module for module in found if module is not None}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_import_graph_has_no_cycle():
    edges = graph()
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target] if target in trail else [module, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles: " + "; ".join(" → ".join(cycle) for cycle in cycles)


def test_each_layer_imports_only_its_own_and_lower_layers():
    upward = [
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in graph().items()
        for target in sorted(targets)
        if LAYERS[layer(target)] > LAYERS[layer(module)]
    ]
    assert upward == []


def test_the_broker_knows_nothing_of_users_tokens_or_models():
    leaks = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if module.startswith("notify.broker")
        for target in targets
        if not target.startswith(("notify.broker", "notify.conf", "notify.metrics"))
    ]
    assert leaks == []
