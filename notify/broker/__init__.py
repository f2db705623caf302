"""The broker that wakes held polls: Redis pub/sub (plain, Sentinel, Cluster sharded), or in-process memory."""

from __future__ import annotations

import threading

from notify.broker.base import Broker, Subscription
from notify.conf import conf

__all__ = ["Broker", "Subscription", "get_broker", "wake_everyone"]

_brokers: dict[tuple[str, str], Broker] = {}
_lock = threading.Lock()


def get_broker() -> Broker:
    """The process's broker for the current settings (built on first use)."""
    kind = conf.BROKER
    key = (kind, conf.REDIS_URL if kind == "redis" else "")
    with _lock:
        broker = _brokers.get(key)
        if broker is None:
            from notify.auth import credentials_changed  # notify.auth needs the models: not at import

            if kind == "memory":
                from notify.broker.memory import MemoryBroker

                broker = MemoryBroker()
            elif conf.REDIS_URL.startswith(("redis+cluster:", "rediss+cluster:")):
                from notify.broker.cluster import ClusterBroker

                broker = ClusterBroker(
                    conf.REDIS_URL,
                    batch_size=conf.PUBLISH_BATCH_SIZE,
                    client_name=f"{conf.CHANNEL_PREFIX}:hub",
                    unsubscribe_delay=conf.UNSUBSCRIBE_DELAY,
                )
            elif conf.REDIS_URL.startswith(("redis+sentinel:", "rediss+sentinel:")):
                from notify.broker.sentinel import SentinelBroker

                broker = SentinelBroker(
                    conf.REDIS_URL,
                    batch_size=conf.PUBLISH_BATCH_SIZE,
                    client_name=f"{conf.CHANNEL_PREFIX}:hub",
                    unsubscribe_delay=conf.UNSUBSCRIBE_DELAY,
                    auth_channel=conf.AUTH_CHANNEL,
                    on_auth=credentials_changed,
                )
            else:
                from notify.broker.redis import RedisBroker

                broker = RedisBroker(
                    conf.REDIS_URL,
                    batch_size=conf.PUBLISH_BATCH_SIZE,
                    client_name=f"{conf.CHANNEL_PREFIX}:hub",
                    unsubscribe_delay=conf.UNSUBSCRIBE_DELAY,
                    auth_channel=conf.AUTH_CHANNEL,
                    on_auth=credentials_changed,
                )
            _brokers[key] = broker
        return broker


def wake_everyone() -> int:
    """Wake every poll held in this process (at shutdown); return how many."""
    with _lock:
        brokers = list(_brokers.values())
    return sum(broker.wake_everyone() for broker in brokers)
