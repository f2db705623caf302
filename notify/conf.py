"""The app's settings: one ``NOTIFY`` dict in the project's settings, read lazily.

Every property reads ``settings.NOTIFY`` when it is accessed, never at import, so
``override_settings(NOTIFY=...)`` in tests takes effect at once.
"""

from __future__ import annotations

from typing import Any, TypedDict

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # "redis" (one pub/sub connection per worker) or "memory" (a single process, no Redis).
    "BROKER": "redis",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    # Channels are named "<prefix>:user:<id>" and "<prefix>:topic:<name>"; give each
    # deployment (or test run) its own.
    "CHANNEL_PREFIX": "notify",
    # Poll timeout in seconds when the client gives none, and the most a client may ask for.
    "DEFAULT_TIMEOUT": 25.0,
    "MAX_TIMEOUT": 60.0,
    "DEFAULT_LIMIT": 50,
    "MAX_LIMIT": 100,
    # Polls one user may hold at once, across every worker and host (counted in Redis;
    # per process with the memory broker or while Redis fails); the next gets 429.
    "MAX_POLLS_PER_USER": 10,
    # Polls one worker process may hold at once; the next gets 503 with Retry-After.
    # None: the process's open-file limit less 256 (each held poll is a socket).
    "MAX_HELD_POLLS": None,
    # How long a poll waits for Redis to confirm its subscription before it falls back
    # to re-checking the database every RECHECK_INTERVAL seconds.
    "SUBSCRIBE_TIMEOUT": 2.0,
    "RECHECK_INTERVAL": 5.0,
    # Seconds a channel stays subscribed after its last held poll ends, so that the
    # client's immediate re-poll costs no SUBSCRIBE round trip. 0: unsubscribe at once.
    "UNSUBSCRIBE_DELAY": 2.0,
    # Threads that run the poll path's database queries (each keeps its own connection).
    "DB_THREADS": 8,
    # Seconds a poll waits for one of its queries before answering 503: a database
    # that hangs must not hold polls (and their clients) past their timeout.
    "DB_TIMEOUT": 5.0,
    # Notifications published in one Redis pipeline round trip.
    "PUBLISH_BATCH_SIZE": 1000,
    # Cache used for token look-ups; None disables caching.
    "CACHE_ALIAS": "default",
    "TOKEN_CACHE_SECONDS": 60,
    # Seconds a worker may trust a bearer token it verified, for held polls, while it
    # hears every announced revocation on its auth channel (notify.auth). A change
    # made without signals (QuerySet.update on tokens) takes up to this long to reach
    # held polls. Sessions are verified on every held poll. 0: tokens too.
    "CREDENTIAL_TRUST_SECONDS": 300,
    # Topic streams (notify.topics). How much of each topic is kept: fnmatch pattern of
    # topic names -> {"keep_last": messages or None, "keep_seconds": seconds or None};
    # the longest matching pattern wins. Applied when a message is published.
    "TOPIC_RETENTION": {"*": {"keep_last": 1000, "keep_seconds": None}},
    # Dotted path to a callable (user, topic, action) -> bool, action "read" or "post",
    # asked on every topic poll and post. None: every topic is closed to everyone.
    "TOPIC_PERMISSION": None,
    # How deeply JSON may nest: a topic message's data (objects and arrays inside it
    # count), and the body of /notify/read and of a publish (one level more: its
    # envelope). Checked on the raw body without recursion, before it is parsed or
    # anything stored: deeper gets 400 "too_deep". At most 256 (notify.E013): the
    # answers that carry such data are encoded recursively.
    "MAX_JSON_DEPTH": 32,
    # Sizes, checked where data enters, before anything is stored (notify.sizes). A topic
    # message's data as compact JSON in UTF-8: larger gets 413 "too_large" over HTTP and
    # TooLarge (a ValueError) from notify.publish(). A notification's title, body, url and
    # data (as compact JSON) together, in UTF-8: larger raises TooLarge from notify.send().
    "MAX_TOPIC_MESSAGE_BYTES": 8 * 1024,
    "MAX_NOTIFICATION_BYTES": 32 * 1024,
    # The bytes of one stream's answer to a poll: a page stops before the item that would
    # pass it, as it stops at 'limit' (never before its first item), and its cursor is the
    # last item answered, so the client's next poll goes on from there at once. A
    # multi-stream poll: per stream.
    "MAX_ANSWER_BYTES": 1024 * 1024,
    # Rate limits per user, across every worker and host (notify.limits, counted in Redis;
    # per process with the memory broker or while Redis fails). Past one: 429 with
    # Retry-After. None: no limit. For HTTP clients only: notify.send() and
    # notify.publish() are the project's own code.
    # Streams answered at once (a poll without a cursor: one per stream it asks for) a second.
    "MAX_SNAPSHOTS_PER_SECOND": 20,
    # Messages published over HTTP a minute: to any one topic, and in all.
    "MAX_TOPIC_PUBLISHES_PER_MINUTE": 60,
    "MAX_PUBLISHES_PER_MINUTE": 120,
    # Topics a user's publishes over HTTP may create an hour.
    "MAX_NEW_TOPICS_PER_HOUR": 100,
    # Reminders (deliver_at) pending at once, where users create them over HTTP
    # (notify.limits.bounded_reminders; the demo's "Remind me" form).
    "MAX_PENDING_REMINDERS_PER_USER": 100,
    # The history API (notify.history, docs/history.md): notifications in one page when
    # the client gives no 'limit', and the most it may ask for (each page also stops at
    # MAX_ANSWER_BYTES).
    "HISTORY_DEFAULT_LIMIT": 20,
    "HISTORY_MAX_LIMIT": 100,
    # Middleware LongPollRouter applies to the polls it serves (they skip MIDDLEWARE):
    # dotted paths of async-capable middleware classes, outermost first. None: those of
    # MIDDLEWARE that polls need (POLL_MIDDLEWARE_FROM_MIDDLEWARE), in MIDDLEWARE's order.
    "POLL_MIDDLEWARE": None,
    # Prometheus metrics (notify.metrics, docs/metrics.md): off by default. On, /notify/metrics
    # answers staff users, and requests with "Authorization: Bearer <METRICS_TOKEN>" when it is set.
    "METRICS": False,
    "METRICS_TOKEN": None,
    # The most /notify/health waits for Redis to confirm a subscription and for the database.
    "HEALTH_TIMEOUT": 1.0,
    # The admin's live dashboard (notify.dashboard, docs/admin.md#live-dashboard): while a staff
    # user has it open, each worker publishes its figures to the topic "notify-ops:dashboard"
    # every DASHBOARD_INTERVAL seconds (and nothing while nobody watches).
    "DASHBOARD_INTERVAL": 2.0,
    # Presence (notify.presence, docs/topics.md#presence): a held poll on a topic marks its
    # user present there, across every worker and host (in Redis; per process with the
    # memory broker), and "presence:<topic>" carries "join" and "leave" events. Off by
    # default: it costs a Redis script per held topic poll and a database row per event.
    "PRESENCE": False,
    # Seconds a user stays present after their last poll on the topic ends (a client
    # re-polls at once, so this only bridges the gap). A worker killed while holding the
    # poll: its timeout plus this after the poll began. Leave is seen within this plus a
    # sweep (a quarter of it, 0.2 to 5 s).
    "PRESENCE_TTL": 10.0,
    # The most users GET /notify/topics/<name>/presence lists (its "count" counts them all).
    "MAX_PRESENCE": 100,
    # Per-user preferences (notify.preferences, docs/preferences.md). The rules a user
    # without a matching rule of their own gets, same shape as a user's:
    # [{"kind": "", "level": "", "page": True, "email": True}, ...] (kind "" and level ""
    # match everything; the most specific rule wins). Nothing matching: page and email.
    "DEFAULT_PREFERENCE_RULES": [],
    # Rules one user may have (the preferences API refuses more with 400).
    "MAX_PREFERENCE_RULES": 100,
    # Changes one user may make to their preferences over HTTP a minute (each rewrites their
    # rules); past it 429 with Retry-After. None: no limit.
    "MAX_PREFERENCE_CHANGES_PER_MINUTE": 30,
    # The kinds a preferences page offers to choose for, kind -> label:
    # {"chat": "Chat messages", "billing": "Invoices and payments"}. Only what pages and
    # GET /notify/preferences show: a rule may name any kind.
    "PREFERENCE_KINDS": {},
    # Email digests (notify.digests, docs/email.md): off by default. On, notify_scheduler
    # emails what stayed unread, grouped per user, through Django's email backend.
    "EMAIL_DIGESTS": False,
    # Seconds a notification of each level must stay unread before it is emailed; a level
    # left out or None is never emailed.
    "EMAIL_DELAY": {"info": 3600, "success": 3600, "warning": 900, "error": 300},
    # Grouping (notify.grouping, docs/grouping.md): a send with a group collapses into the
    # recipient's unread notification of the same kind and group if that one was delivered
    # at most GROUP_WINDOW seconds ago (each collapse renews it). None: however long ago;
    # 0: never (every send is a notification of its own).
    "GROUP_WINDOW": 24 * 3600,
    # Actors a grouped notification names, newest first (each at most 150 characters): every
    # poll answer carrying it carries them. "{actors}" counts people exactly up to this many.
    "GROUP_MAX_ACTORS": 10,
    # Seconds between two digests to one user, at least: what falls due meanwhile waits for
    # the next. 0: a digest as soon as something is due.
    "EMAIL_DIGEST_WINDOW": 3600,
    # Notifications listed in one digest; the rest of it is counted ("and 12 more").
    "EMAIL_DIGEST_MAX_ITEMS": 20,
    # Digests one scheduler claims, and sends, in one pass of its loop.
    "EMAIL_DIGESTS_PER_PASS": 100,
    # Seconds a scheduler has to send a digest it took; past it (the scheduler died while
    # sending) another scheduler sends it. Keep it well above Django's EMAIL_TIMEOUT.
    "EMAIL_SEND_LEASE": 600,
    # The site's address, for the digest's absolute links ("https://example.com"): required
    # when EMAIL_DIGESTS is on (notify.E044). INBOX_URL: the inbox's path on it.
    "SITE_URL": None,
    "INBOX_URL": "/",
    # The digest's sender; None: settings.DEFAULT_FROM_EMAIL.
    "EMAIL_FROM": None,
    # Leave out of digests what an open page of the user's already received (a held poll
    # presented a cursor at or past it: notify.receipts). False: email what is unread, seen
    # in a background tab or not.
    "EMAIL_SKIP_RECEIVED": True,
}

# What POLL_MIDDLEWARE None takes from MIDDLEWARE: middleware without which a poll's
# answer is unusable. django-cors-headers: a cross-origin client cannot read an answer
# that lacks its CORS headers.
POLL_MIDDLEWARE_FROM_MIDDLEWARE = ("corsheaders.middleware.CorsMiddleware",)


class RetentionRule(TypedDict, total=False):
    """One rule of TOPIC_RETENTION (notify.E010 checks its shape): a key left out or None keeps everything."""

    keep_last: int | None
    keep_seconds: float | None


class Settings:
    """Typed access to ``settings.NOTIFY`` with the defaults above."""

    def _get(self, name: str) -> Any:
        user = getattr(settings, "NOTIFY", None)
        if isinstance(user, dict) and name in user:
            return user[name]
        return DEFAULTS[name]

    @property
    def BROKER(self) -> str:
        return self._get("BROKER")

    @property
    def REDIS_URL(self) -> str:
        return self._get("REDIS_URL")

    @property
    def CHANNEL_PREFIX(self) -> str:
        return self._get("CHANNEL_PREFIX")

    @property
    def DEFAULT_TIMEOUT(self) -> float:
        return float(self._get("DEFAULT_TIMEOUT"))

    @property
    def MAX_TIMEOUT(self) -> float:
        return float(self._get("MAX_TIMEOUT"))

    @property
    def DEFAULT_LIMIT(self) -> int:
        return self._get("DEFAULT_LIMIT")

    @property
    def MAX_LIMIT(self) -> int:
        return self._get("MAX_LIMIT")

    @property
    def MAX_POLLS_PER_USER(self) -> int:
        return self._get("MAX_POLLS_PER_USER")

    @property
    def MAX_HELD_POLLS(self) -> int:
        value = self._get("MAX_HELD_POLLS")
        if value is None:
            import resource

            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            value = max(16, soft - 256) if soft != resource.RLIM_INFINITY else 100_000
        return value

    @property
    def SUBSCRIBE_TIMEOUT(self) -> float:
        return float(self._get("SUBSCRIBE_TIMEOUT"))

    @property
    def UNSUBSCRIBE_DELAY(self) -> float:
        return float(self._get("UNSUBSCRIBE_DELAY"))

    @property
    def RECHECK_INTERVAL(self) -> float:
        return float(self._get("RECHECK_INTERVAL"))

    @property
    def DB_THREADS(self) -> int:
        return self._get("DB_THREADS")

    @property
    def DB_TIMEOUT(self) -> float:
        return float(self._get("DB_TIMEOUT"))

    @property
    def PUBLISH_BATCH_SIZE(self) -> int:
        return self._get("PUBLISH_BATCH_SIZE")

    @property
    def CACHE_ALIAS(self) -> str | None:
        return self._get("CACHE_ALIAS")

    @property
    def TOKEN_CACHE_SECONDS(self) -> int:
        return self._get("TOKEN_CACHE_SECONDS")

    @property
    def CREDENTIAL_TRUST_SECONDS(self) -> float:
        return float(self._get("CREDENTIAL_TRUST_SECONDS"))

    @property
    def TOPIC_RETENTION(self) -> dict[str, RetentionRule]:
        return self._get("TOPIC_RETENTION")

    @property
    def TOPIC_PERMISSION(self) -> str | None:
        return self._get("TOPIC_PERMISSION")

    @property
    def MAX_JSON_DEPTH(self) -> int:
        return self._get("MAX_JSON_DEPTH")

    @property
    def MAX_TOPIC_MESSAGE_BYTES(self) -> int:
        return self._get("MAX_TOPIC_MESSAGE_BYTES")

    @property
    def MAX_NOTIFICATION_BYTES(self) -> int:
        return self._get("MAX_NOTIFICATION_BYTES")

    @property
    def MAX_ANSWER_BYTES(self) -> int:
        return self._get("MAX_ANSWER_BYTES")

    @property
    def MAX_SNAPSHOTS_PER_SECOND(self) -> int | None:
        return self._get("MAX_SNAPSHOTS_PER_SECOND")

    @property
    def MAX_TOPIC_PUBLISHES_PER_MINUTE(self) -> int | None:
        return self._get("MAX_TOPIC_PUBLISHES_PER_MINUTE")

    @property
    def MAX_PUBLISHES_PER_MINUTE(self) -> int | None:
        return self._get("MAX_PUBLISHES_PER_MINUTE")

    @property
    def MAX_NEW_TOPICS_PER_HOUR(self) -> int | None:
        return self._get("MAX_NEW_TOPICS_PER_HOUR")

    @property
    def MAX_PENDING_REMINDERS_PER_USER(self) -> int | None:
        return self._get("MAX_PENDING_REMINDERS_PER_USER")

    @property
    def HISTORY_DEFAULT_LIMIT(self) -> int:
        return self._get("HISTORY_DEFAULT_LIMIT")

    @property
    def HISTORY_MAX_LIMIT(self) -> int:
        return self._get("HISTORY_MAX_LIMIT")

    @property
    def PRESENCE(self) -> bool:
        return bool(self._get("PRESENCE"))

    @property
    def PRESENCE_TTL(self) -> float:
        return float(self._get("PRESENCE_TTL"))

    @property
    def MAX_PRESENCE(self) -> int:
        return self._get("MAX_PRESENCE")

    @property
    def DEFAULT_PREFERENCE_RULES(self) -> list[dict[str, Any]]:
        return list(self._get("DEFAULT_PREFERENCE_RULES"))

    @property
    def MAX_PREFERENCE_RULES(self) -> int:
        return self._get("MAX_PREFERENCE_RULES")

    @property
    def MAX_PREFERENCE_CHANGES_PER_MINUTE(self) -> int | None:
        return self._get("MAX_PREFERENCE_CHANGES_PER_MINUTE")

    @property
    def PREFERENCE_KINDS(self) -> dict[str, str]:
        return dict(self._get("PREFERENCE_KINDS"))

    @property
    def EMAIL_DIGESTS(self) -> bool:
        return self._get("EMAIL_DIGESTS") is True

    @property
    def EMAIL_DELAY(self) -> dict[str, float | None]:
        return dict(self._get("EMAIL_DELAY"))

    @property
    def GROUP_WINDOW(self) -> float | None:
        value = self._get("GROUP_WINDOW")
        return None if value is None else float(value)

    @property
    def GROUP_MAX_ACTORS(self) -> int:
        return int(self._get("GROUP_MAX_ACTORS"))

    @property
    def EMAIL_DIGEST_WINDOW(self) -> float:
        return float(self._get("EMAIL_DIGEST_WINDOW"))

    @property
    def EMAIL_DIGEST_MAX_ITEMS(self) -> int:
        return self._get("EMAIL_DIGEST_MAX_ITEMS")

    @property
    def EMAIL_DIGESTS_PER_PASS(self) -> int:
        return self._get("EMAIL_DIGESTS_PER_PASS")

    @property
    def EMAIL_SEND_LEASE(self) -> float:
        return float(self._get("EMAIL_SEND_LEASE"))

    @property
    def SITE_URL(self) -> str | None:
        value = self._get("SITE_URL")
        return value.rstrip("/") if isinstance(value, str) else None

    @property
    def INBOX_URL(self) -> str:
        return self._get("INBOX_URL")

    @property
    def EMAIL_SKIP_RECEIVED(self) -> bool:
        return self._get("EMAIL_SKIP_RECEIVED") is not False

    @property
    def EMAIL_FROM(self) -> str | None:
        return self._get("EMAIL_FROM")

    @property
    def POLL_MIDDLEWARE(self) -> list[str]:
        value = self._get("POLL_MIDDLEWARE")
        if value is None:
            middleware = getattr(settings, "MIDDLEWARE", None) or []
            return [path for path in middleware if path in POLL_MIDDLEWARE_FROM_MIDDLEWARE]
        return list(value)

    @property
    def METRICS(self) -> bool:
        return self._get("METRICS") is True

    @property
    def METRICS_TOKEN(self) -> str | None:
        return self._get("METRICS_TOKEN")

    @property
    def DASHBOARD_INTERVAL(self) -> float:
        return float(self._get("DASHBOARD_INTERVAL"))

    @property
    def HEALTH_TIMEOUT(self) -> float:
        return float(self._get("HEALTH_TIMEOUT"))

    @property
    def HEALTH_CHANNEL(self) -> str:
        """What /notify/health subscribes to, to learn that Redis confirms this worker's subscriptions."""
        return f"{self.CHANNEL_PREFIX}:health"

    @property
    def AUTH_CHANNEL(self) -> str:
        """Where a change to any user's credentials is announced to every worker (notify.auth)."""
        return f"{self.CHANNEL_PREFIX}:auth"

    def channel_for_user(self, user_id: int) -> str:
        return f"{self.CHANNEL_PREFIX}:user:{user_id}"

    @property
    def announcements_channel(self) -> str:
        return f"{self.CHANNEL_PREFIX}:announcements"

    def channel_for_topic(self, name: str) -> str:
        return f"{self.CHANNEL_PREFIX}:topic:{name}"


conf = Settings()
