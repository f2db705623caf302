"""The demo's settings with notify's pub/sub on a Redis Cluster (``NOTIFY_CLUSTER_URL``).

The cache (tokens, sessions) stays on the plain Redis of ``REDIS_URL``: in cluster
mode only pub/sub is sharded (see docs/deploy.md).
"""

import os

from project.settings import *  # noqa: F403
from project.settings import NOTIFY

NOTIFY = {**NOTIFY, "REDIS_URL": os.environ["NOTIFY_CLUSTER_URL"]}
