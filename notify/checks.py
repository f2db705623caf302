"""System checks for the NOTIFY setting: misconfiguration fails at start-up, with the fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string

from notify.conf import DEFAULTS, conf

# The deepest MAX_JSON_DEPTH accepted: answers are encoded by json's recursive encoder,
# inside a server's own call stack, and a publish 960 levels deep failed there (issue 13).
MAX_JSON_DEPTH_CEILING = 256
# The largest HISTORY_MAX_LIMIT accepted: a history page's rows are read into memory at once.
HISTORY_LIMIT_CEILING = 1000
# The most users GET /notify/topics/<name>/presence may list (NOTIFY['MAX_PRESENCE']).
MAX_PRESENCE_CEILING = 10_000


def _whole(value: Any, *, least: int = 1, most: int | None = None) -> bool:
    """A whole number (an int, not a bool) from ``least`` to ``most``."""
    return not isinstance(value, bool) and isinstance(value, int) and least <= value and (most is None or value <= most)


def _number(value: Any, *, above: float | None = None, least: float | None = None, most: float | None = None) -> bool:
    """An int or float (not a bool; NaN fails any bound): more than ``above``, at least ``least``, at most ``most``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (above is None or value > above) and (least is None or value >= least) and (most is None or value <= most)


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
    elif conf.BROKER == "redis" and urlsplit(str(conf.REDIS_URL)).scheme not in (
        "redis",
        "rediss",
        "unix",
        "redis+cluster",
        "rediss+cluster",
        "redis+sentinel",
        "rediss+sentinel",
    ):
        problems.append(
            Error(
                f"NOTIFY['REDIS_URL'] must be a redis://, rediss://, unix://, redis+cluster:// or redis+sentinel:// "
                f"URL, not {conf.REDIS_URL!r}.",
                id="notify.E004",
            )
        )
    elif conf.BROKER == "redis":
        problems += check_cluster_url(str(conf.REDIS_URL))
    numbers = (
        "DEFAULT_TIMEOUT",
        "MAX_TIMEOUT",
        "SUBSCRIBE_TIMEOUT",
        "RECHECK_INTERVAL",
        "DB_TIMEOUT",
        "HEALTH_TIMEOUT",
        "PRESENCE_TTL",
    )
    for name in numbers:
        value = user.get(name, DEFAULTS[name])
        if not _number(value, above=0):
            problems.append(
                Error(f"NOTIFY['{name}'] must be a positive number of seconds, not {value!r}.", id="notify.E005")
            )
    for name in ("UNSUBSCRIBE_DELAY", "CREDENTIAL_TRUST_SECONDS"):
        value = user.get(name, DEFAULTS[name])
        if not _number(value, least=0):
            problems.append(
                Error(f"NOTIFY['{name}'] must be a number of seconds, 0 or more, not {value!r}.", id="notify.E005")
            )
    integers = (
        "DEFAULT_LIMIT",
        "MAX_LIMIT",
        "MAX_POLLS_PER_USER",
        "DB_THREADS",
        "PUBLISH_BATCH_SIZE",
        "HISTORY_DEFAULT_LIMIT",
        "HISTORY_MAX_LIMIT",
    )
    for name in integers:
        value = user.get(name, DEFAULTS[name])
        if not _whole(value):
            problems.append(
                Error(f"NOTIFY['{name}'] must be a whole number of at least 1, not {value!r}.", id="notify.E006")
            )
    held = user.get("MAX_HELD_POLLS")
    if held is not None and not _whole(held):
        problems.append(
            Error(
                f"NOTIFY['MAX_HELD_POLLS'] must be None or a whole number of at least 1, not {held!r}.",
                id="notify.E006",
            )
        )
    depth = user.get("MAX_JSON_DEPTH", DEFAULTS["MAX_JSON_DEPTH"])
    if not _whole(depth, most=MAX_JSON_DEPTH_CEILING):
        problems.append(
            Error(
                f"NOTIFY['MAX_JSON_DEPTH'] must be a whole number from 1 to {MAX_JSON_DEPTH_CEILING}, not {depth!r}.",
                hint="Deeper data is encoded recursively in every answer that carries it; 32 is plenty for messages.",
                id="notify.E013",
            )
        )
    problems += check_sizes(user)
    problems += check_metrics(user)
    problems += check_presence(user)
    problems += check_dashboard(user)
    problems += check_preferences(user)
    problems += check_email(user)
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
        if conf.HISTORY_DEFAULT_LIMIT > conf.HISTORY_MAX_LIMIT:
            problems.append(
                Error(
                    "NOTIFY['HISTORY_DEFAULT_LIMIT'] is above NOTIFY['HISTORY_MAX_LIMIT'].",
                    hint="Raise HISTORY_MAX_LIMIT or lower HISTORY_DEFAULT_LIMIT.",
                    id="notify.E021",
                )
            )
        if conf.HISTORY_MAX_LIMIT > HISTORY_LIMIT_CEILING:
            problems.append(
                Error(
                    f"NOTIFY['HISTORY_MAX_LIMIT'] is {conf.HISTORY_MAX_LIMIT}; at most {HISTORY_LIMIT_CEILING} "
                    "is accepted.",
                    hint="A history page is read into memory whole; clients page on with 'before'.",
                    id="notify.E022",
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
    problems += check_topic_retention(user.get("TOPIC_RETENTION", DEFAULTS["TOPIC_RETENTION"]))
    problems += check_topic_permission(user.get("TOPIC_PERMISSION"))
    problems += check_poll_middleware(user.get("POLL_MIDDLEWARE"))
    problems += check_rate_limits(user)
    problems += check_grouping(user)
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


# The shortest METRICS_TOKEN: a guessable token would publish the metrics to anyone.
MIN_METRICS_TOKEN_LENGTH = 16


def check_metrics(user: dict[str, Any]) -> list[Error | Warning]:
    problems: list[Error | Warning] = []
    enabled = user.get("METRICS", DEFAULTS["METRICS"])
    if not isinstance(enabled, bool):
        problems.append(Error(f"NOTIFY['METRICS'] must be True or False, not {enabled!r}.", id="notify.E023"))
    token = user.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or len(token) < MIN_METRICS_TOKEN_LENGTH):
        problems.append(
            Error(
                f"NOTIFY['METRICS_TOKEN'] must be None or a string of at least {MIN_METRICS_TOKEN_LENGTH} characters.",
                hint="For example secrets.token_urlsafe(32), read from the environment.",
                id="notify.E023",
            )
        )
    if enabled is True:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            problems.append(
                Error(
                    "NOTIFY['METRICS'] is True but prometheus_client is not installed.",
                    hint="pip install prometheus-client (requirements.txt pins it).",
                    id="notify.E023",
                )
            )
    return problems


# The smallest MAX_ANSWER_BYTES: room for an answer's envelope and a small item.
MIN_ANSWER_BYTES = 1024


def check_sizes(user: dict[str, Any]) -> list[Error | Warning]:
    """The size limits of issue 13 (notify.sizes, notify.pages): whole numbers, and an answer
    budget that holds at least one item of the largest size accepted."""
    problems: list[Error | Warning] = []
    sizes = {name: user.get(name, DEFAULTS[name]) for name in ("MAX_TOPIC_MESSAGE_BYTES", "MAX_NOTIFICATION_BYTES")}
    for (name, value), check_id in zip(sizes.items(), ("notify.E015", "notify.E016"), strict=True):
        if not _whole(value):
            problems.append(
                Error(
                    f"NOTIFY['{name}'] must be a whole number of bytes, at least 1, not {value!r}.",
                    hint=f"Data larger than this is refused before it is stored; the default is {DEFAULTS[name]}.",
                    id=check_id,
                )
            )
    budget = user.get("MAX_ANSWER_BYTES", DEFAULTS["MAX_ANSWER_BYTES"])
    if not _whole(budget, least=MIN_ANSWER_BYTES):
        problems.append(
            Error(
                f"NOTIFY['MAX_ANSWER_BYTES'] must be a whole number of bytes, at least {MIN_ANSWER_BYTES}, "
                f"not {budget!r}.",
                hint="One poll answer stops at this many bytes (per stream); the default is 1 MiB.",
                id="notify.E017",
            )
        )
    elif not problems and budget < max(sizes.values()):
        largest = max(sizes, key=lambda name: sizes[name])
        problems.append(
            Error(
                f"NOTIFY['MAX_ANSWER_BYTES'] ({budget}) is below NOTIFY['{largest}'] ({sizes[largest]}): "
                "an answer could carry only one such item, and clients would page through them one poll each.",
                hint=f"Raise MAX_ANSWER_BYTES to a few times {largest}, or lower {largest}.",
                id="notify.E018",
            )
        )
    return problems


def check_topic_retention(rules: Any) -> list[Error | Warning]:
    example = (
        "For example {'*': {'keep_last': 1000, 'keep_seconds': None}, 'room:*': {'keep_last': None, "
        "'keep_seconds': 86400}}."
    )
    if not isinstance(rules, dict) or not all(isinstance(pattern, str) and pattern for pattern in rules):
        return [
            Error(
                "NOTIFY['TOPIC_RETENTION'] must be a dict from topic name patterns (fnmatch) to rules.",
                hint=example,
                id="notify.E010",
            )
        ]
    problems: list[Error | Warning] = []
    for pattern, rule in rules.items():
        if not isinstance(rule, dict) or not set(rule) <= {"keep_last", "keep_seconds"}:
            problems.append(
                Error(
                    f"NOTIFY['TOPIC_RETENTION'][{pattern!r}] must be a dict with the keys 'keep_last' and "
                    f"'keep_seconds' only, not {rule!r}.",
                    hint=example,
                    id="notify.E010",
                )
            )
            continue
        keep_last, keep_seconds = rule.get("keep_last"), rule.get("keep_seconds")
        if keep_last is not None and not _whole(keep_last):
            problems.append(
                Error(
                    f"NOTIFY['TOPIC_RETENTION'][{pattern!r}]['keep_last'] must be None or a whole number "
                    f"of at least 1, not {keep_last!r}.",
                    id="notify.E010",
                )
            )
        if keep_seconds is not None and not _number(keep_seconds, above=0):
            problems.append(
                Error(
                    f"NOTIFY['TOPIC_RETENTION'][{pattern!r}]['keep_seconds'] must be None or a positive number of "
                    f"seconds, not {keep_seconds!r}.",
                    id="notify.E010",
                )
            )
    return problems


def check_topic_permission(path: Any) -> list[Error | Warning]:
    if path is None:
        return []
    hint = (
        "Give the dotted path of a function (user, topic, action) -> bool, e.g. 'myapp.topics.can_use', "
        "or None to close every topic."
    )
    if not isinstance(path, str):
        return [
            Error(
                f"NOTIFY['TOPIC_PERMISSION'] must be a dotted path or None, not {path!r}.", hint=hint, id="notify.E011"
            )
        ]
    try:
        hook = import_string(path)
    except Exception as error:  # ImportError, or whatever importing its module raised
        return [Error(f"NOTIFY['TOPIC_PERMISSION'] {path!r} cannot be imported: {error}.", hint=hint, id="notify.E011")]
    if not callable(hook):
        return [Error(f"NOTIFY['TOPIC_PERMISSION'] {path!r} is not callable.", hint=hint, id="notify.E011")]
    return []


def check_poll_middleware(paths: Any) -> list[Error | Warning]:
    """POLL_MIDDLEWARE: None, or dotted paths of async-capable middleware classes (notify.asgi)."""
    if paths is None:
        return []
    hint = (
        "Give a list of dotted paths of async-capable middleware classes, e.g. "
        "['corsheaders.middleware.CorsMiddleware'], or None for those of MIDDLEWARE that polls need."
    )
    if not isinstance(paths, (list, tuple)) or not all(isinstance(path, str) for path in paths):
        return [
            Error(
                f"NOTIFY['POLL_MIDDLEWARE'] must be a list of dotted paths or None, not {paths!r}.",
                hint=hint,
                id="notify.E014",
            )
        ]
    problems: list[Error | Warning] = []
    for path in paths:
        try:
            middleware = import_string(path)
        except Exception as error:  # ImportError, or whatever importing its module raised
            problems.append(
                Error(f"NOTIFY['POLL_MIDDLEWARE'] {path!r} cannot be imported: {error}.", hint=hint, id="notify.E014")
            )
            continue
        if getattr(middleware, "async_capable", False) is not True:
            problems.append(
                Error(
                    f"NOTIFY['POLL_MIDDLEWARE'] {path!r} is not async-capable.",
                    hint="LongPollRouter serves polls without a thread each: it runs only middleware whose "
                    "class says async_capable = True (Django's flag). Leave this one out of POLL_MIDDLEWARE.",
                    id="notify.E014",
                )
            )
        elif isinstance(middleware, type) and issubclass(middleware, MiddlewareMixin):
            hooks = [name for name in MIXIN_HOOKS if getattr(middleware, name, None) is not None]
            if hooks:
                problems.append(
                    Warning(
                        f"NOTIFY['POLL_MIDDLEWARE'] {path!r} runs its synchronous {', '.join(hooks)} "
                        "for every poll, in a thread (MiddlewareMixin).",
                        hint="Give it an async __acall__, or leave it out of POLL_MIDDLEWARE.",
                        id="notify.W003",
                    )
                )
    return problems


# MiddlewareMixin's hooks that run through sync_to_async under an async handler.
MIXIN_HOOKS = ("process_request", "process_response")


def check_cluster_url(url: str) -> list[Error | Warning]:
    from notify.broker.cluster import is_cluster_url, parse_cluster_url
    from notify.broker.sentinel import is_sentinel_url, parse_sentinel_url

    parse: Callable[[str], object]
    if is_cluster_url(url):
        parse, hint = (
            parse_cluster_url,
            (
                "For example 'redis+cluster://10.0.0.1:7000,10.0.0.2:7000' (one or more "
                "nodes of the cluster, database 0 only; rediss+cluster:// for TLS)."
            ),
        )
    elif is_sentinel_url(url):
        parse, hint = (
            parse_sentinel_url,
            (
                "For example 'redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster' "
                "(the sentinels, then the service name and optionally /<db>)."
            ),
        )
    else:
        return []
    try:
        parse(url)
    except ValueError as error:
        return [
            Error(
                f"NOTIFY['REDIS_URL'] is not a usable Redis Cluster or Sentinel URL: {error}.",
                hint=hint,
                id="notify.E012",
            )
        ]
    return []


# The rate limits per user (notify.limits): None (no limit) or a whole number.
RATE_LIMITS = (
    "MAX_SNAPSHOTS_PER_SECOND",
    "MAX_TOPIC_PUBLISHES_PER_MINUTE",
    "MAX_PUBLISHES_PER_MINUTE",
    "MAX_NEW_TOPICS_PER_HOUR",
    "MAX_PENDING_REMINDERS_PER_USER",
    "MAX_PREFERENCE_CHANGES_PER_MINUTE",
)


def check_rate_limits(user: dict[str, Any]) -> list[Error | Warning]:
    problems: list[Error | Warning] = []
    for name in RATE_LIMITS:
        value = user.get(name, DEFAULTS[name])
        if value is not None and not _whole(value):
            problems.append(
                Error(
                    f"NOTIFY['{name}'] must be None (no limit) or a whole number of at least 1, not {value!r}.",
                    hint=f"The default is {DEFAULTS[name]}; past it a user gets 429 with Retry-After.",
                    id="notify.E020",
                )
            )
    return problems


def check_presence(user: dict[str, Any]) -> list[Error | Warning]:
    """PRESENCE is a bool; MAX_PRESENCE bounds one answer (PRESENCE_TTL is checked with the other seconds)."""
    problems: list[Error | Warning] = []
    enabled = user.get("PRESENCE", DEFAULTS["PRESENCE"])
    if not isinstance(enabled, bool):
        problems.append(Error(f"NOTIFY['PRESENCE'] must be True or False, not {enabled!r}.", id="notify.E030"))
    most = user.get("MAX_PRESENCE", DEFAULTS["MAX_PRESENCE"])
    if not _whole(most, most=MAX_PRESENCE_CEILING):
        problems.append(
            Error(
                f"NOTIFY['MAX_PRESENCE'] must be a whole number from 1 to {MAX_PRESENCE_CEILING}, not {most!r}.",
                hint="It bounds one answer of GET /notify/topics/<name>/presence; its 'count' counts everyone.",
                id="notify.E030",
            )
        )
    return problems


def check_dashboard(user: dict[str, Any]) -> list[Error | Warning]:
    """DASHBOARD_INTERVAL: every worker publishes (a database row) this often while the dashboard is open."""
    value = user.get("DASHBOARD_INTERVAL", DEFAULTS["DASHBOARD_INTERVAL"])
    if not _number(value, least=0.1, most=60):
        return [
            Error(
                f"NOTIFY['DASHBOARD_INTERVAL'] must be a number of seconds from 0.1 to 60, not {value!r}.",
                hint="While the admin's live dashboard is open, every worker publishes a message this often.",
                id="notify.E031",
            )
        ]
    return []


# The most preference rules one user may have (NOTIFY['MAX_PREFERENCE_RULES']): every send reads them all.
PREFERENCE_RULES_CEILING = 1000


def check_preferences(user: dict[str, Any]) -> list[Error | Warning]:
    """DEFAULT_PREFERENCE_RULES has the shape of a user's rules; MAX_PREFERENCE_RULES bounds them;
    PREFERENCE_KINDS maps kinds to labels (notify.preferences)."""
    from notify.models import KIND_PATTERN, Level

    problems: list[Error | Warning] = []
    most = user.get("MAX_PREFERENCE_RULES", DEFAULTS["MAX_PREFERENCE_RULES"])
    if not _whole(most, most=PREFERENCE_RULES_CEILING):
        problems.append(
            Error(
                f"NOTIFY['MAX_PREFERENCE_RULES'] must be a whole number from 1 to {PREFERENCE_RULES_CEILING}, "
                f"not {most!r}.",
                hint="Every send reads each recipient's rules.",
                id="notify.E032",
            )
        )
    rules = user.get("DEFAULT_PREFERENCE_RULES", DEFAULTS["DEFAULT_PREFERENCE_RULES"])
    shape = '[{"kind": "", "level": "", "page": True, "email": True}, ...]'
    if not isinstance(rules, list):
        problems.append(
            Error(
                f"NOTIFY['DEFAULT_PREFERENCE_RULES'] must be a list, not {rules!r:.60}.", hint=shape, id="notify.E033"
            )
        )
        rules = []
    for index, rule in enumerate(rules):
        where = f"NOTIFY['DEFAULT_PREFERENCE_RULES'][{index}]"
        if not isinstance(rule, dict) or not set(rule) <= {"kind", "level", "page", "email"}:
            problems.append(
                Error(f"{where} must be a dict of kind, level, page and email.", hint=shape, id="notify.E033")
            )
            continue
        kind, level = rule.get("kind", ""), rule.get("level", "")
        if not isinstance(kind, str) or (kind and not KIND_PATTERN.match(kind)):
            problems.append(
                Error(f"{where}['kind'] is not a kind: {kind!r:.60}.", hint="'' matches every kind.", id="notify.E033")
            )
        if level != "" and level not in Level.values:
            problems.append(
                Error(
                    f"{where}['level'] must be one of {', '.join(Level.values)} or '', not {level!r:.60}.",
                    id="notify.E033",
                )
            )
        if any(not isinstance(rule.get(name, True), bool) for name in ("page", "email")):
            problems.append(Error(f"{where}: 'page' and 'email' must be True or False.", id="notify.E033"))
    kinds = user.get("PREFERENCE_KINDS", DEFAULTS["PREFERENCE_KINDS"])
    if not isinstance(kinds, dict) or not all(
        isinstance(kind, str) and KIND_PATTERN.match(kind) and isinstance(label, str) for kind, label in kinds.items()
    ):
        problems.append(
            Error(
                f"NOTIFY['PREFERENCE_KINDS'] must be a dict of kind -> label, not {kinds!r:.80}.",
                hint='For example {"chat": "Chat messages"}.',
                id="notify.E034",
            )
        )
    return problems


# The most notifications one digest may list (NOTIFY['EMAIL_DIGEST_MAX_ITEMS']) and digests one
# pass may claim and send (NOTIFY['EMAIL_DIGESTS_PER_PASS']): both are read into memory at once.
EMAIL_ITEMS_CEILING = 200
EMAIL_PASS_CEILING = 10_000


def check_email(user: dict[str, Any]) -> list[Error | Warning]:
    """Email digests (notify.digests, docs/email.md): notify.E040-E048."""
    from notify.models import Level

    problems: list[Error | Warning] = []
    enabled = user.get("EMAIL_DIGESTS", DEFAULTS["EMAIL_DIGESTS"])
    if not isinstance(enabled, bool):
        problems.append(Error(f"NOTIFY['EMAIL_DIGESTS'] must be True or False, not {enabled!r}.", id="notify.E040"))
    delays = user.get("EMAIL_DELAY", DEFAULTS["EMAIL_DELAY"])
    levels = ", ".join(repr(level) for level in Level.values)
    if not isinstance(delays, dict):
        problems.append(
            Error(
                f"NOTIFY['EMAIL_DELAY'] must be a dict of level -> seconds or None, not {delays!r}.",
                hint=f"For example {DEFAULTS['EMAIL_DELAY']!r}; a level left out or None is never emailed.",
                id="notify.E041",
            )
        )
    else:
        for level, delay in delays.items():
            if level not in Level.values:
                problems.append(
                    Error(
                        f"NOTIFY['EMAIL_DELAY'] has an unknown level {level!r}.",
                        hint=f"Levels: {levels}.",
                        id="notify.E041",
                    )
                )
            elif delay is not None and not _number(delay, least=0):
                problems.append(
                    Error(
                        f"NOTIFY['EMAIL_DELAY'][{level!r}] must be seconds (0 or more) or None, not {delay!r}.",
                        hint="None: notifications of this level are never emailed.",
                        id="notify.E041",
                    )
                )
    window = user.get("EMAIL_DIGEST_WINDOW", DEFAULTS["EMAIL_DIGEST_WINDOW"])
    if not _number(window, least=0):
        problems.append(
            Error(
                f"NOTIFY['EMAIL_DIGEST_WINDOW'] must be a number of seconds, 0 or more, not {window!r}.",
                hint="At most one digest per user per this many seconds; 0: no wait between digests.",
                id="notify.E042",
            )
        )
    for name, most in (("EMAIL_DIGEST_MAX_ITEMS", EMAIL_ITEMS_CEILING), ("EMAIL_DIGESTS_PER_PASS", EMAIL_PASS_CEILING)):
        value = user.get(name, DEFAULTS[name])
        if not _whole(value, most=most):
            problems.append(
                Error(f"NOTIFY['{name}'] must be a whole number from 1 to {most}, not {value!r}.", id="notify.E043")
            )
    site = user.get("SITE_URL", DEFAULTS["SITE_URL"])
    hint = "The digest's links are absolute: the address users reach the site at, e.g. 'https://example.com'."
    if site is not None and not _site_url(site):
        problems.append(
            Error(
                f"NOTIFY['SITE_URL'] must be an http(s) URL without a query, not {site!r}.", hint=hint, id="notify.E044"
            )
        )
    elif site is None and enabled is True:
        problems.append(
            Error("NOTIFY['SITE_URL'] must be set when NOTIFY['EMAIL_DIGESTS'] is on.", hint=hint, id="notify.E044")
        )
    inbox = user.get("INBOX_URL", DEFAULTS["INBOX_URL"])
    if not isinstance(inbox, str) or not inbox.startswith("/") or inbox.startswith("//"):
        problems.append(
            Error(
                f"NOTIFY['INBOX_URL'] must be a path on SITE_URL starting with '/', not {inbox!r}.",
                hint="Where the digest's 'Open your inbox' leads, e.g. '/inbox/'.",
                id="notify.E045",
            )
        )
    sender = user.get("EMAIL_FROM", DEFAULTS["EMAIL_FROM"])
    if sender is not None and (not isinstance(sender, str) or "@" not in sender):
        problems.append(
            Error(
                f"NOTIFY['EMAIL_FROM'] must be None or an address, not {sender!r}.",
                hint="For example 'Example <noreply@example.com>'; None: DEFAULT_FROM_EMAIL.",
                id="notify.E046",
            )
        )
    lease = user.get("EMAIL_SEND_LEASE", DEFAULTS["EMAIL_SEND_LEASE"])
    if not _number(lease, above=0):
        problems.append(
            Error(
                f"NOTIFY['EMAIL_SEND_LEASE'] must be a positive number of seconds, not {lease!r}.",
                hint="How long a scheduler has to send a digest before another may; well above EMAIL_TIMEOUT.",
                id="notify.E047",
            )
        )
    skip = user.get("EMAIL_SKIP_RECEIVED", DEFAULTS["EMAIL_SKIP_RECEIVED"])
    if not isinstance(skip, bool):
        problems.append(Error(f"NOTIFY['EMAIL_SKIP_RECEIVED'] must be True or False, not {skip!r}.", id="notify.E048"))
    return problems


# The most actors a grouped notification may name (NOTIFY['GROUP_MAX_ACTORS']): each is up to 150
# characters, in every poll answer that carries the notification.
GROUP_MAX_ACTORS_CEILING = 100
# GROUP_WINDOW below this (ten years; None for no bound): infinity or 1e300 would overflow the
# time arithmetic of every grouped send.
GROUP_WINDOW_CEILING = 10 * 366 * 24 * 3600


def check_grouping(user: dict[str, Any]) -> list[Error | Warning]:
    """GROUP_WINDOW: seconds, or None; GROUP_MAX_ACTORS bounds what each grouped notification carries."""
    problems: list[Error | Warning] = []
    window = user.get("GROUP_WINDOW", DEFAULTS["GROUP_WINDOW"])
    if window is not None and not _number(window, least=0, most=GROUP_WINDOW_CEILING):
        problems.append(
            Error(
                f"NOTIFY['GROUP_WINDOW'] must be a number of seconds from 0 to {GROUP_WINDOW_CEILING} (ten years), "
                f"or None, not {window!r}.",
                hint="A grouped send collapses into an unread notification delivered at most this long ago; "
                "None: however long ago, 0: never.",
                id="notify.E050",
            )
        )
    most = user.get("GROUP_MAX_ACTORS", DEFAULTS["GROUP_MAX_ACTORS"])
    if not _whole(most, most=GROUP_MAX_ACTORS_CEILING):
        problems.append(
            Error(
                f"NOTIFY['GROUP_MAX_ACTORS'] must be a whole number from 1 to {GROUP_MAX_ACTORS_CEILING}, "
                f"not {most!r}.",
                hint="The actors a grouped notification names, newest first; every poll answer carries them.",
                id="notify.E051",
            )
        )
    return problems


def _site_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.query and not parts.fragment
