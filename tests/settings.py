"""Test settings: the demo's settings, with a Redis prefix and database names of this run's own.

The run id is put in the environment so that the uvicorn servers the tests start
(which read project.settings) use the same Redis prefix.
"""

import os
import uuid

RUN_ID = os.environ.setdefault("NOTIFY_TEST_RUN", uuid.uuid4().hex[:8])
os.environ.setdefault("NOTIFY_CHANNEL_PREFIX", f"notify-test-{RUN_ID}")
if os.environ.get("DATABASE_URL", "").startswith("postgres"):
    # Presence writes join and leave events to the database after a topic poll starts or
    # ends, by then often in the next test, whose teardown's flush (TRUNCATE) deadlocks
    # with that write on PostgreSQL. The PostgreSQL leg runs presence only where it tests
    # it, on servers of its own (tests/test_presence.py); the SQLite leg, where a flush
    # waits for the write instead, runs everything with the demo's presence on.
    os.environ.setdefault("NOTIFY_PRESENCE", "0")

from project.settings import *  # noqa: E402,F403
from project.settings import BASE_DIR, DATABASES  # noqa: E402

(BASE_DIR / "var").mkdir(exist_ok=True)  # test databases, server logs, artifacts

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that a uvicorn server in another process sees the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-{RUN_ID}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_notify_{RUN_ID}"}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
