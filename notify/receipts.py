"""What each user's pages have received: the highest notification seq a page's poll confirmed.

A poll that presents the inbox cursor ``n`` proves its page holds every notification up
to ``n`` (clients re-poll with the cursor of what they got). The email digest
(notify.digests) leaves those out: what an open page received needs no email. Noted
only while digests are on, and only when it moves a user's mark forward in this worker
(a client's idle re-polls with the same cursor cost nothing), with the limits' ops of
the event loop in one Redis round trip (notify.ratelimit.run_soon), not waited for.

A hint, kept in Redis for ``KEEP_SECONDS``: lost (Redis down, the memory broker, a mark
expired), a notification is emailed as if no page had received it.
"""

from __future__ import annotations

import logging
import threading

import redis
import redis.cluster

from notify import ratelimit
from notify.conf import conf

logger = logging.getLogger("notify")

# Longer than any sensible EMAIL_DELAY: a mark outlives the digests that ask it.
KEEP_SECONDS = 7 * 24 * 3600
# Marks this worker remembers having written, before it starts afresh.
REMEMBER_AT_MOST = 100_000

# Raises the user's mark to ARGV[1] (never lowers it) and keeps it KEEP_SECONDS.
RAISE_SCRIPT = """
local seen = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > seen then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"""

_written: dict[int, int] = {}
_lock = threading.Lock()  # WSGI serves polls from several threads


def key(user_id: int) -> str:
    return ratelimit.user_key(user_id, "received")


def note(user_id: int, seq: int) -> None:
    """A page of this user holds every notification up to ``seq``. Called in the event loop."""
    if not conf.EMAIL_DIGESTS or seq <= 0:
        return
    with _lock:
        if _written.get(user_id, 0) >= seq:
            return
        if len(_written) >= REMEMBER_AT_MOST:
            _written.clear()
        _written[user_id] = seq
    ratelimit.run_soon(RAISE_SCRIPT, [key(user_id)], [seq, KEEP_SECONDS * 1000])


def received(user_ids: list[int]) -> dict[int, int]:
    """Each user's mark (0: none known). Synchronous, for the digest; {} when Redis fails."""
    if not user_ids or conf.BROKER == "memory":
        return {}
    try:
        client = ratelimit.client()
        keys = [key(uid) for uid in user_ids]
        # A Cluster's keys live on many nodes (each user's in its own hash slot).
        values = client.mget_nonatomic(keys) if isinstance(client, redis.cluster.RedisCluster) else client.mget(keys)
    except redis.RedisError as error:
        logger.warning("notify: could not read what pages received (%s); emailing as if none had", error)
        return {}
    return {uid: int(value) for uid, value in zip(user_ids, values, strict=True) if value is not None}
