"""Which credentials this worker may trust without verifying them again.

A hint (``_Hints``) remembers which user a credential belonged to when this
process last verified it. It names the channel a poll subscribes to before it
verifies, and it is also *trusted* (the poll skips verifying; ``is_trusted``)
while three things hold: it was verified during the broker's current auth epoch
(this worker's Redis connection has been subscribed to the auth channel since
before the verification began), that epoch is still running, and the trust has
not run out (CREDENTIAL_TRUST_SECONDS, and for a session its known expiry).

Every announced change (a token revoked or deleted, a user deactivated, deleted
or logged out, a password changed; notify.auth.revocation)
is published on the auth channel before the user's own channel and, on the same
connection, reaches this worker before the confirmation of any later SUBSCRIBE:
``credentials_changed`` drops the user's hints before a poll that subscribes after
the change can trust one. A change published after the poll subscribed wakes it on
its own channel. A change heard *while* a credential was being verified may have
come after the database was read: that verification is not trusted (``remember``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from notify.conf import conf

logger = logging.getLogger("notify")

Credential = tuple[str, str]  # ("token", raw token) or ("session", session key)


class Verified(NamedTuple):
    """A credential verified now: whose it is, and for how many more seconds it can last
    at most (a session's known expiry; None: no known end)."""

    user_id: int
    lifetime: float | None = None


class _Trust:
    __slots__ = ("user_id", "epoch", "until")

    def __init__(self, user_id: int, epoch: object | None, until: float) -> None:
        self.user_id = user_id
        self.epoch = epoch
        self.until = until


class _Hints:
    """Credential → the user it was verified for, when, and in which auth epoch. Bounded,
    oldest forgotten first."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._entries: OrderedDict[Credential, _Trust] = OrderedDict()
        self._by_user: dict[int, set[Credential]] = {}
        self._lock = threading.Lock()  # WSGI: one event loop per request thread
        self.changes = 0  # auth messages heard (see remember())

    def user_id(self, credential: Credential) -> int | None:
        entry = self._entries.get(credential)
        return entry.user_id if entry is not None else None

    def trusted(self, credential: Credential, user_id: int, epoch: object | None) -> bool:
        entry = self._entries.get(credential)
        return (
            entry is not None
            and epoch is not None
            and entry.epoch is epoch
            and entry.user_id == user_id
            and time.monotonic() < entry.until
        )

    def remember(self, credential: Credential, verified: Verified, epoch: object | None) -> None:
        until = time.monotonic() + conf.CREDENTIAL_TRUST_SECONDS
        if verified.lifetime is not None:
            until = min(until, time.monotonic() + verified.lifetime)
        with self._lock:
            self._discard(credential)
            self._entries[credential] = _Trust(verified.user_id, epoch, until)
            self._by_user.setdefault(verified.user_id, set()).add(credential)
            if len(self._entries) > self.size:
                self._discard(next(iter(self._entries)))

    def forget(self, credential: Credential) -> None:
        with self._lock:
            self._discard(credential)

    def forget_user(self, user_id: int) -> None:
        with self._lock:
            self.changes += 1
            for credential in self._by_user.pop(user_id, ()):
                self._entries.pop(credential, None)

    def clear(self) -> None:
        with self._lock:
            self.changes += 1
            self._entries.clear()
            self._by_user.clear()

    def _discard(self, credential: Credential) -> None:
        entry = self._entries.pop(credential, None)
        if entry is not None:
            credentials = self._by_user.get(entry.user_id)
            if credentials is not None:
                credentials.discard(credential)
                if not credentials:
                    del self._by_user[entry.user_id]


_hints = _Hints()


def credentials_changed(message: bytes) -> None:
    """An auth-channel message (a user id): that user's credentials must be verified again."""
    try:
        user_id = int(message)
    except ValueError:
        logger.warning(
            "notify: unexpected message on the auth channel: %r; verifying every credential again", message[:100]
        )
        _hints.clear()
    else:
        _hints.forget_user(user_id)


class Listening(NamedTuple):
    """What this worker hears of credential changes, read before verifying one."""

    epoch: object | None  # the broker's auth epoch (None: not listening)
    changes: int  # auth messages heard so far


def listening() -> Listening:
    from notify.broker import get_broker

    return Listening(get_broker().auth_epoch(), _hints.changes)


def hinted_user_id(credential: Credential) -> int | None:
    """The user this worker last verified ``credential`` for, trusted or not."""
    return _hints.user_id(credential)


def is_trusted(credential: Credential, user_id: int, now: Listening) -> bool:
    """Whether a held poll may skip verifying ``credential`` (see the module docstring).

    Tokens and sessions alike: each end of either is announced, but for the ends a
    session can meet without a signal (it expires: its trust ends with it when the
    session engine keeps an expiry date; it is deleted from a cache or file store:
    within CREDENTIAL_TRUST_SECONDS). 0 turns trust off.
    """
    return conf.CREDENTIAL_TRUST_SECONDS > 0 and _hints.trusted(credential, user_id, now.epoch)


def remember(credential: Credential, verified: Verified, since: Listening) -> None:
    """Note a credential verified now; ``since``: ``listening()`` read before verifying it.

    If any change was announced while it was being verified, the answer may
    predate that change (and the change has come and gone): kept as a hint, not
    trusted. Changes are rare; the next verification is trusted.
    """
    epoch = since.epoch if since.changes == _hints.changes else None
    _hints.remember(credential, verified, epoch)


def forget_hint(credential: Credential) -> None:
    _hints.forget(credential)
