"""System checks for the NOTIFY setting: misconfiguration fails at start-up, with the fix."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from notify.conf import DEFAULTS, conf


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    user = getattr(settings, "NOTIFY", {})
    if not isinstance(user, dict):
        return [Error("NOTIFY must be a dict.", hint="For example NOTIFY = {'BROKER': 'redis'}.", id="notify.E001")]
    problems: list[Error | Warning] = []
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        problems.append(
            Error(
                f"NOTIFY has unknown keys: {', '.join(unknown)}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="notify.E002",
            )
        )
    if conf.BROKER not in ("redis", "memory"):
        problems.append(Error(f"NOTIFY['BROKER'] must be 'redis' or 'memory', not {conf.BROKER!r}.", id="notify.E003"))
    elif conf.BROKER == "redis" and urlsplit(str(conf.REDIS_URL)).scheme not in ("redis", "rediss", "unix"):
        problems.append(
            Error(
                f"NOTIFY['REDIS_URL'] must be a redis://, rediss:// or unix:// URL, not {conf.REDIS_URL!r}.",
                id="notify.E004",
            )
        )
    numbers = ("DEFAULT_TIMEOUT", "MAX_TIMEOUT", "SUBSCRIBE_TIMEOUT", "RECHECK_INTERVAL", "DB_TIMEOUT")
    for name in numbers:
        value = user.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            problems.append(Error(f"NOTIFY['{name}'] must be a positive number of seconds, not {value!r}.", id="notify.E005"))
    delay = user.get("UNSUBSCRIBE_DELAY", DEFAULTS["UNSUBSCRIBE_DELAY"])
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
        problems.append(Error(f"NOTIFY['UNSUBSCRIBE_DELAY'] must be a number of seconds, 0 or more, not {delay!r}.",
                              id="notify.E005"))
    integers = ("DEFAULT_LIMIT", "MAX_LIMIT", "MAX_POLLS_PER_USER", "DB_THREADS", "PUBLISH_BATCH_SIZE")
    for name in integers:
        value = user.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(Error(f"NOTIFY['{name}'] must be a whole number of at least 1, not {value!r}.", id="notify.E006"))
    held = user.get("MAX_HELD_POLLS")
    if held is not None and (isinstance(held, bool) or not isinstance(held, int) or held < 1):
        problems.append(
            Error(f"NOTIFY['MAX_HELD_POLLS'] must be None or a whole number of at least 1, not {held!r}.",
                  id="notify.E006")
        )
    if not problems:
        if conf.DEFAULT_TIMEOUT > conf.MAX_TIMEOUT:
            problems.append(
                Error(
                    "NOTIFY['DEFAULT_TIMEOUT'] is above NOTIFY['MAX_TIMEOUT'].",
                    hint="Raise MAX_TIMEOUT or lower DEFAULT_TIMEOUT.",
                    id="notify.E007",
                )
            )
        if conf.DEFAULT_LIMIT > conf.MAX_LIMIT:
            problems.append(
                Error(
                    "NOTIFY['DEFAULT_LIMIT'] is above NOTIFY['MAX_LIMIT'].",
                    hint="Raise MAX_LIMIT or lower DEFAULT_LIMIT.",
                    id="notify.E008",
                )
            )
    if conf.CACHE_ALIAS is not None and conf.CACHE_ALIAS not in settings.CACHES:
        problems.append(
            Error(
                f"NOTIFY['CACHE_ALIAS'] names {conf.CACHE_ALIAS!r}, which is not in CACHES.",
                hint="Name a cache from CACHES, or set it to None to look tokens up without a cache.",
                id="notify.E009",
            )
        )
    if conf.BROKER == "memory":
        problems.append(
            Warning(
                "NOTIFY['BROKER'] is 'memory': notifications reach only polls held in this process.",
                hint="Use the 'redis' broker with more than one worker process or server.",
                id="notify.W001",
            )
        )
    middleware = getattr(settings, "MIDDLEWARE", [])
    if "django.contrib.auth.middleware.AuthenticationMiddleware" not in middleware:
        problems.append(
            Warning(
                "AuthenticationMiddleware is not installed: polls can authenticate only with bearer tokens.",
                hint="Add SessionMiddleware and AuthenticationMiddleware to MIDDLEWARE for session auth.",
                id="notify.W002",
            )
        )
    return problems
