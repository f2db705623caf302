"""Settings for a server with small size limits (tests/test_sizes.py): the demo's, with a topic
message of at most 2,000 bytes, a notification of at most 2,000 and a poll answer of at most
8,192, so that a few dozen messages near the limit fill several pages."""

from project.settings import *  # noqa: F403
from project.settings import NOTIFY

NOTIFY = {**NOTIFY, "MAX_TOPIC_MESSAGE_BYTES": 2000, "MAX_NOTIFICATION_BYTES": 2000, "MAX_ANSWER_BYTES": 8192}
