"""Settings of the demo site, read from the environment (see README, "Settings")."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "insecure-dev-key-set-DJANGO_SECRET_KEY-in-production"
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "notify",
    "project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_url(url: str) -> dj_database_url.DBConfig:
    database = dj_database_url.parse(url)
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database["OPTIONS"] = {
            # WAL lets polls read while a send writes; IMMEDIATE takes the write
            # lock at BEGIN, so a sender never fails to upgrade a read lock.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    elif database["ENGINE"] == "django.db.backends.postgresql":
        # Under ASGI every request runs its ORM calls in a thread of its own, so
        # persistent connections would pile up: pool them instead.
        database["CONN_MAX_AGE"] = 0
        database["OPTIONS"] = {"pool": {"min_size": 1, "max_size": 20, "timeout": 10}, "connect_timeout": 5}
    return database


DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": os.environ.get("NOTIFY_CHANNEL_PREFIX", "notify"),
        "OPTIONS": {
            # The cache only saves work: when Redis is down, go to the database.
            "IGNORE_EXCEPTIONS": True,
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
        },
    }
}

# Sessions read from the cache (Redis), written through to the database: a poll
# authenticated by its session costs no session query.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

NOTIFY: dict[str, Any] = {
    "BROKER": os.environ.get("NOTIFY_BROKER", "redis"),
    # Pub/sub may live elsewhere than the cache, e.g. on a Redis Cluster
    # (redis+cluster://...) while the cache stays on a plain Redis.
    "REDIS_URL": os.environ.get("NOTIFY_REDIS_URL") or REDIS_URL,
    "CHANNEL_PREFIX": os.environ.get("NOTIFY_CHANNEL_PREFIX", "notify"),
    # Topic streams: signed-in users may read and post rooms named "room:*" (project/demo/topics.py).
    "TOPIC_PERMISSION": "project.demo.topics.can_use",
    # The chat shows who is in the room and who joins and leaves (docs/topics.md#presence).
    "PRESENCE": env_bool("NOTIFY_PRESENCE", True),
    # What the demo sends, by kind, as its preferences page offers it (docs/preferences.md).
    "PREFERENCE_KINDS": {
        "message": "Messages from staff (the Send page)",
        "reminder": "Your reminders",
        "task": "Tasks assigned to you",
    },
}
# Any other NOTIFY key can be set as NOTIFY_<KEY>, e.g. NOTIFY_MAX_TIMEOUT=30.
for _key in (
    "MAX_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "RECHECK_INTERVAL",
    "SUBSCRIBE_TIMEOUT",
    "DB_TIMEOUT",
    "CREDENTIAL_TRUST_SECONDS",
    "HEALTH_TIMEOUT",
    "PRESENCE_TTL",
    "DASHBOARD_INTERVAL",
):
    if os.environ.get(f"NOTIFY_{_key}"):
        NOTIFY[_key] = float(os.environ[f"NOTIFY_{_key}"])
for _key in (
    "MAX_POLLS_PER_USER",
    "MAX_HELD_POLLS",
    "DB_THREADS",
    "MAX_TOPIC_MESSAGE_BYTES",
    "MAX_NOTIFICATION_BYTES",
    "MAX_ANSWER_BYTES",
    "MAX_SNAPSHOTS_PER_SECOND",
    "MAX_TOPIC_PUBLISHES_PER_MINUTE",
    "MAX_PUBLISHES_PER_MINUTE",
    "MAX_NEW_TOPICS_PER_HOUR",
    "MAX_PENDING_REMINDERS_PER_USER",
    "MAX_PREFERENCE_CHANGES_PER_MINUTE",
):
    if os.environ.get(f"NOTIFY_{_key}"):
        NOTIFY[_key] = int(os.environ[f"NOTIFY_{_key}"])

# Prometheus metrics at /notify/metrics (docs/metrics.md): NOTIFY_METRICS=1, and the scraper's
# token in NOTIFY_METRICS_TOKEN (else staff users only).
if env_bool("NOTIFY_METRICS", False):
    NOTIFY["METRICS"] = True
if os.environ.get("NOTIFY_METRICS_TOKEN"):
    NOTIFY["METRICS_TOKEN"] = os.environ["NOTIFY_METRICS_TOKEN"]

# Email digests (docs/email.md): off unless NOTIFY_EMAIL_DIGESTS=1 (`make run` turns them on). The
# demo's delays are short, so that a digest shows up in the terminal within minutes; NOTIFY_EMAIL_DELAY
# (JSON, e.g. '{"info": 3600, "error": 300}') and NOTIFY_EMAIL_DIGEST_WINDOW set others.
NOTIFY["SITE_URL"] = os.environ.get("NOTIFY_SITE_URL") or "http://127.0.0.1:8000"
NOTIFY["INBOX_URL"] = os.environ.get("NOTIFY_INBOX_URL") or "/inbox/"
if env_bool("NOTIFY_EMAIL_DIGESTS", False):
    NOTIFY["EMAIL_DIGESTS"] = True
    NOTIFY["EMAIL_DELAY"] = {"info": 120, "success": 120, "warning": 60, "error": 30}
    NOTIFY["EMAIL_DIGEST_WINDOW"] = 300
if os.environ.get("NOTIFY_EMAIL_DELAY"):
    NOTIFY["EMAIL_DELAY"] = json.loads(os.environ["NOTIFY_EMAIL_DELAY"])
for _key in ("EMAIL_DIGEST_WINDOW", "EMAIL_SEND_LEASE"):
    if os.environ.get(f"NOTIFY_{_key}"):
        NOTIFY[_key] = float(os.environ[f"NOTIFY_{_key}"])
for _key in ("EMAIL_DIGEST_MAX_ITEMS", "EMAIL_DIGESTS_PER_PASS"):
    if os.environ.get(f"NOTIFY_{_key}"):
        NOTIFY[_key] = int(os.environ[f"NOTIFY_{_key}"])

# Email: through an SMTP server when EMAIL_HOST is set (EMAIL_PORT, default 25), else printed
# to the console (the demo's digests show up in `make run`'s terminal).
if os.environ.get("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = os.environ["EMAIL_HOST"]
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT") or 25)
    EMAIL_TIMEOUT = float(os.environ.get("EMAIL_TIMEOUT") or 30)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL") or "notify demo <noreply@localhost>"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "inbox"
LOGOUT_REDIRECT_URL = "login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"notify": {"handlers": ["console"], "level": os.environ.get("NOTIFY_LOG_LEVEL", "INFO")}},
}
