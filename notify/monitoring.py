"""What operators and load balancers ask a worker: ``/notify/metrics`` and ``/notify/health``.

Both are plain Django views (notify.urls), never served by LongPollRouter's poll
path, and neither counts against a limit of the poll path (held polls, rate limits).
docs/metrics.md says what they answer.
"""

from __future__ import annotations

import asyncio
import hmac

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from notify import db, lifecycle, metrics
from notify.broker import get_broker
from notify.conf import conf
from notify.views import error, method_not_allowed


@csrf_exempt  # GET only: it changes nothing
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition: for staff users, or with ``Authorization: Bearer <METRICS_TOKEN>``."""
    if request.method != "GET":
        return method_not_allowed("GET")
    if not conf.METRICS:
        return error(404, "not_found", "Metrics are off: set NOTIFY['METRICS'] = True to serve them here.")
    if not allowed(request):
        return error(
            403,
            "forbidden",
            "The metrics are for staff users, or for requests with the header "
            "'Authorization: Bearer <NOTIFY['METRICS_TOKEN']>'.",
        )
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def allowed(request: HttpRequest) -> bool:
    token = conf.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and given.startswith("Bearer "):
        return hmac.compare_digest(given.removeprefix("Bearer ").strip().encode(), token.encode())
    user = getattr(request, "user", None)  # None without AuthenticationMiddleware
    return bool(user is not None and user.is_active and user.is_staff)


@csrf_exempt  # GET only: it changes nothing
async def health(request: HttpRequest) -> JsonResponse:
    """200 if this worker can hold polls now: Redis confirms its subscriptions, the database
    answers, and it is not shutting down; otherwise 503. Each check is bounded by
    NOTIFY["HEALTH_TIMEOUT"]; the body names each check and whether it passed."""
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed("GET, HEAD")
    redis_ok, database_ok = await asyncio.gather(redis_confirms(), database_answers())
    checks = {"redis": redis_ok, "database": database_ok, "draining": lifecycle.draining()}
    healthy = redis_ok and database_ok and not checks["draining"]
    failed = [name for name, ok in (("redis", redis_ok), ("database", database_ok)) if not ok]
    if checks["draining"]:
        failed.append("draining")
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks, "failed": failed},
        status=200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
    )


async def redis_confirms() -> bool:
    """Whether Redis confirms a subscription of this worker's hub within HEALTH_TIMEOUT: the
    very step a held poll waits on before it checks the database (notify.polling, step 2)."""
    try:
        async with get_broker().subscribe(conf.HEALTH_CHANNEL) as subscription:
            return await subscription.wait_ready(conf.HEALTH_TIMEOUT)
    except Exception:  # noqa: BLE001 - whatever fails, this worker cannot hold polls
        return False


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def database_answers() -> bool:
    """Whether the database answers ``SELECT 1`` through the poll path's threads within HEALTH_TIMEOUT."""
    try:
        async with asyncio.timeout(conf.HEALTH_TIMEOUT):
            await db.read(_select_one)
    except (TimeoutError, DatabaseError):
        return False
    return True
