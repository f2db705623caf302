"""The broker that wakes held polls: Redis pub/sub (plain, Sentinel, Cluster sharded), or in-process memory."""

from __future__ import annotations

import threading
from collections.abc import Callable

from notify.broker.base import Broker, Flag, Subscription
from notify.conf import conf

__all__ = ["Broker", "Flag", "Subscription", "get_broker", "listen_to_auth_channel", "wake_everyone"]

_brokers: dict[tuple[str, str], Broker] = {}
_lock = threading.Lock()
# Who hears the auth channel's messages (notify.auth registers in ready()): the
# broker carries them and knows nothing of what they mean.
_auth_listeners: list[Callable[[bytes], None]] = []


def listen_to_auth_channel(listener: Callable[[bytes], None]) -> None:
    """Call ``listener`` with every message of the process-wide auth channel (AUTH_CHANNEL)."""
    if listener not in _auth_listeners:
        _auth_listeners.append(listener)


def _heard_on_auth_channel(message: bytes) -> None:
    for listener in _auth_listeners:
        listener(message)


def get_broker() -> Broker:
    """The process's broker for the current settings (built on first use)."""
    kind = conf.BROKER
    key = (kind, conf.REDIS_URL if kind == "redis" else "")
    with _lock:
        broker = _brokers.get(key)
        if broker is None:
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
                    on_auth=_heard_on_auth_channel,
                )
            else:
                from notify.broker.redis import RedisBroker

                broker = RedisBroker(
                    conf.REDIS_URL,
                    batch_size=conf.PUBLISH_BATCH_SIZE,
                    client_name=f"{conf.CHANNEL_PREFIX}:hub",
                    unsubscribe_delay=conf.UNSUBSCRIBE_DELAY,
                    auth_channel=conf.AUTH_CHANNEL,
                    on_auth=_heard_on_auth_channel,
                )
            _brokers[key] = broker
        return broker


def wake_everyone() -> int:
    """Wake every poll held in this process (at shutdown); return how many."""
    with _lock:
        brokers = list(_brokers.values())
    return sum(broker.wake_everyone() for broker in brokers)
