"""The demo's settings with notify's pub/sub on another Redis (``NOTIFY_PUBSUB_URL``):
a ``redis+cluster://`` or ``redis+sentinel://`` URL in the tests.

The cache (tokens, sessions) stays on the plain Redis of ``REDIS_URL``: only
pub/sub follows NOTIFY['REDIS_URL'] (see docs/deploy.md).
"""

import os

from project.settings import *  # noqa: F403
from project.settings import NOTIFY

NOTIFY = {**NOTIFY, "REDIS_URL": os.environ["NOTIFY_PUBSUB_URL"]}
