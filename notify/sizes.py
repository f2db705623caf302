"""How large data may be where it enters: the error past a size limit.

``NOTIFY["MAX_TOPIC_MESSAGE_BYTES"]`` bounds a topic message's data
(notify.topics.check_data), ``NOTIFY["MAX_NOTIFICATION_BYTES"]`` a notification's
text and data (notify.sending.check_content); both are measured as stored and
answered: UTF-8, data as compact JSON. The bytes of one poll answer are bounded
apart, where pages are cut (notify.pages, ``MAX_ANSWER_BYTES``).
"""

from __future__ import annotations


class TooLarge(ValueError):
    """Data or text past a NOTIFY size limit; the message says how large and the limit."""
