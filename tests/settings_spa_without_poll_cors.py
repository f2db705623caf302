"""project/spa/settings.py with ``POLL_MIDDLEWARE = []``: CorsMiddleware in MIDDLEWARE still answers
preflights and the requests Django serves, but not the polls LongPollRouter serves
(tests/browser/test_spa.py shows the app on another origin cannot read them then)."""

from project.spa.settings import *  # noqa: F403
from project.spa.settings import NOTIFY

NOTIFY = {**NOTIFY, "POLL_MIDDLEWARE": []}
