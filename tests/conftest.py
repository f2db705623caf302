from __future__ import annotations

import inspect
import os
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.server import Server


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def pytest_sessionstart(session: pytest.Session) -> None:
    # Delivery is tested against real services only: refuse to run without them. Redis is
    # checked by the first test that needs it (redis_answers), so that the unit layer
    # (`pytest -m unit`) runs without it.
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("postgresql") and not _answers(
        database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432)
    ):
        pytest.exit(f"PostgreSQL does not answer at {database['HOST']}:{database['PORT']}.", returncode=3)


# --- layers: unit / system / browser (docs/testing.md) ---------------------------------------------------------------

# Fixtures that start a process, hold a Redis connection or need Redis behind them.
SYSTEM_FIXTURES = {
    "server",
    "redis_client",
    "close_hubs",
    "fuzz_server",
    "cluster",
    "cluster_server",
    "sentinel",
    "own_redis",
    "scheduler_process",
    "built",
    "site",
    "demo",
    "chromium",
    "browser",
    "smtp",  # an SMTP server on loopback (tests/smtp.py)
}
# Modules whose tests start processes (servers, nginx, schedulers, clusters, builds) in their bodies,
# or make threads race over several database connections.
SYSTEM_MODULES = {
    "test_bench",
    "test_cluster",
    "test_docs",
    "test_faults",
    "test_newproject",
    "test_nginx",
    "test_production",
    "test_races",
    "test_shutdown",
    "test_wsgi",
}

# Or whose bodies start a server or a scheduler of their own.
SYSTEM_CALLS = re.compile(r"\b(Server|Scheduler|own_server)\(")


def _starts_processes(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    try:
        return function is not None and bool(SYSTEM_CALLS.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test is ``unit`` or ``system`` (browser tests are ``system`` too), unless it says so itself."""
    for item in items:
        if item.get_closest_marker("unit") or item.get_closest_marker("system"):
            continue
        module = item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        fixtures = set(getattr(item, "fixturenames", ()))
        if (
            fixtures & SYSTEM_FIXTURES
            or module in SYSTEM_MODULES
            or _starts_processes(item)
            or item.get_closest_marker("browser")
            or item.get_closest_marker("postgres")
        ):
            item.add_marker(pytest.mark.system)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def redis_answers() -> None:
    """Fails the run at once, with what to do, if Redis does not answer."""
    url = redis.connection.parse_url(settings.REDIS_URL)
    if not _answers(url.get("host", "127.0.0.1"), url.get("port", 6379)):
        pytest.exit(f"Redis does not answer at {settings.REDIS_URL}: start it (see README).", returncode=3)


@pytest.fixture(autouse=True)
def _system_needs_redis(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("system"):
        request.getfixturevalue("redis_answers")


@pytest.fixture(scope="session")
def redis_client(redis_answers: None) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    # Leave nothing of this run behind: cache keys carry the run's prefix.
    prefix = settings.NOTIFY["CHANNEL_PREFIX"]
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def server(redis_answers: None, django_db_setup: Any, django_db_blocker: Any) -> Iterator[Server]:
    """One uvicorn for the session, serving the test database over real HTTP."""
    with django_db_blocker.unblock():
        live = Server().start()
    yield live
    live.stop()  # and whatever the tests threw at it, it never failed inside the app (Server.check_log)


@pytest.fixture
def make_user(transactional_db: Any):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    counter = iter(range(1, 10**6))

    def make(username: str | None = None, **fields: Any):  # type: ignore[no-untyped-def]
        name = username or f"user{next(counter)}-{os.urandom(3).hex()}"
        return get_user_model().objects.create_user(username=name, password="pw", **fields)

    return make


@pytest.fixture
def token_for(transactional_db: Any):  # type: ignore[no-untyped-def]
    from notify.models import ApiToken

    def issue(user: Any) -> str:
        return ApiToken.issue(user)[1]

    return issue


@pytest.fixture
def alice(make_user):  # type: ignore[no-untyped-def]
    """A user of the test's own, for tests about one user."""
    return make_user()


@pytest.fixture
def token(alice: Any, token_for: Any) -> str:
    """A bearer token of ``alice``'s."""
    return token_for(alice)


@pytest.fixture
def session_cookie(transactional_db: Any):  # type: ignore[no-untyped-def]
    """A Cookie header that logs ``user`` in on the live server (session in the test database)."""
    from django.test import Client

    def cookie(user: Any) -> str:
        client = Client()
        client.force_login(user)
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    return cookie


def hub_clients(redis_client: redis.Redis) -> list[dict[str, str]]:
    """The Redis connections of this run's pub/sub hubs (one per worker event loop)."""
    name = f"{settings.NOTIFY['CHANNEL_PREFIX']}:hub"
    return [client for client in redis_client.client_list() if client.get("name") == name]


def poll_channels(hub: dict[str, str]) -> int:
    """Channels a hub connection holds for polls: all it subscribes, less the auth
    channel every hub keeps for its lifetime (notify.auth)."""
    return max(0, int(hub["sub"]) - 1)


@pytest.fixture
async def close_hubs():  # type: ignore[no-untyped-def]
    """Close the Redis hub an in-process async test created in its event loop."""
    yield
    import asyncio

    from notify.broker import redis as redis_broker

    hub = redis_broker._hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.aclose()


@pytest.fixture(scope="session", autouse=True)
def _release_database_connections(django_db_setup: Any) -> Iterator[None]:
    """Close pooled connections (ours and notify.db's threads') before the test database is dropped."""
    yield
    from django.db import connections

    for connection in connections.all():
        if hasattr(connection, "close_pool"):
            connection.close_pool()


@pytest.fixture(autouse=True)
def _close_async_test_connections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Async tests do ORM work through sync_to_async, in asgiref's one shared thread: close its connection."""
    yield
    import inspect

    if inspect.iscoroutinefunction(request.function):
        from asgiref.sync import SyncToAsync
        from django.db import connections

        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
