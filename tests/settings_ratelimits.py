"""The demo's settings with NOTIFY keys of a test's own, given as JSON in ``NOTIFY_TEST_SETTINGS``
(tests/test_ratelimits.py: rate limits small enough to reach with a few requests)."""

import json
import os

from project.settings import *  # noqa: F403
from project.settings import NOTIFY

NOTIFY = {**NOTIFY, **json.loads(os.environ.get("NOTIFY_TEST_SETTINGS", "{}"))}
