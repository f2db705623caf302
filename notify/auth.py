"""Who is polling: the Django session, or ``Authorization: Bearer <token>``."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from functools import partial
from importlib import import_module
from types import SimpleNamespace
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user
from django.core.cache import BaseCache, caches
from django.http import HttpRequest

from notify import batching, db
from notify.conf import conf
from notify.models import ApiToken

logger = logging.getLogger("notify")


class NotAuthenticated(Exception):
    """The request carries no valid session or token; ``detail`` says which."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def token_cache_key(key: str) -> str:
    return f"notify:token:{key}"


def _cache() -> BaseCache | None:
    alias = conf.CACHE_ALIAS
    return caches[alias] if alias else None


def user_id_for_token(raw: str, *, cached: bool = True) -> int | None:
    """The user id a valid, unrevoked token belongs to, or None. Synchronous."""
    return user_ids_for_tokens([raw], cached=cached).get(raw)


def user_ids_for_tokens(raws: list[str], *, cached: bool = True) -> dict[str, int]:
    """The user id of each valid, unrevoked token among ``raws`` (the others left out),
    with one cache round trip and one query for the tokens the cache did not have.
    ``cached=False``: from the database only. Synchronous."""
    secrets: dict[str, list[tuple[str, str]]] = {}
    for raw in raws:
        parts = ApiToken.split(raw)
        if parts is not None:
            secrets.setdefault(parts[0], []).append((raw, parts[1]))
    cache = _cache() if cached else None
    entries: dict[str, tuple[int, str]] = {}
    if cache is not None and secrets:
        try:
            cached_entries = cache.get_many([token_cache_key(key) for key in secrets])
        except Exception:  # a cache outage must not lock users out
            logger.warning("notify: token cache unavailable", exc_info=True)
        else:
            entries = {
                key: cached_entries[token_cache_key(key)] for key in secrets if token_cache_key(key) in cached_entries
            }
    missing = [key for key in secrets if key not in entries]
    if missing:
        rows = (
            ApiToken.objects.active()
            .filter(key__in=missing, user__is_active=True)
            .values_list("key", "user_id", "secret_hash")
        )
        found = {key: (user_id, secret_hash) for key, user_id, secret_hash in rows}
        entries.update(found)
        if cache is not None and found:
            try:
                cache.set_many({token_cache_key(key): entry for key, entry in found.items()}, conf.TOKEN_CACHE_SECONDS)
            except Exception:
                logger.warning("notify: token cache unavailable", exc_info=True)
    users: dict[str, int] = {}
    for key, pairs in secrets.items():
        entry = entries.get(key)
        if entry is None:
            continue
        user_id, secret_hash = entry
        for raw, secret in pairs:
            if ApiToken.secret_matches(secret, secret_hash):
                users[raw] = user_id
    return users


def forget_token(key: str) -> None:
    """Drop a token from the cache (on revoke), so it stops working at once."""
    cache = _cache()
    if cache is not None:
        try:
            cache.delete(token_cache_key(key))
        except Exception:
            logger.warning(
                "notify: token cache unavailable; a revoked token may work until its cache entry expires", exc_info=True
            )


Credential = tuple[str, str]  # ("token", raw token) or ("session", session key)


def credential_of(request: HttpRequest) -> Credential:
    """What identifies the caller; raises NotAuthenticated if the request carries nothing usable."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise NotAuthenticated("The Authorization header must be 'Bearer <token>'.")
        return "token", raw.strip()
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not key:
        raise NotAuthenticated("Log in, or send 'Authorization: Bearer <token>'.")
    return "session", key


def verified_user_id(credential: Credential, *, cached: bool = True) -> int | None:
    """Whose token or session this is, verified now (None: nobody). Synchronous.

    ``cached=False`` reads a token from the database: for re-checks after an
    "auth" message, whose revocation the cache may not show yet.
    """
    kind, value = credential
    if kind == "token":
        return user_id_for_token(value, cached=cached)
    return user_id_for_session(value)


def user_id_for_session(session_key: str) -> int | None:
    """The logged-in user's id for a session key, as SessionMiddleware and
    AuthenticationMiddleware would find it (session auth hash checked). Synchronous."""
    engine = import_module(settings.SESSION_ENGINE)
    # get_user() reads only .session: a stand-in request is enough.
    user = get_user(SimpleNamespace(session=engine.SessionStore(session_key)))  # type: ignore[arg-type]  # a stand-in request
    return user.pk if user.is_authenticated else None


class _Trust:
    __slots__ = ("user_id", "epoch", "until")

    def __init__(self, user_id: int, epoch: object | None, until: float) -> None:
        self.user_id = user_id
        self.epoch = epoch
        self.until = until


class _Hints:
    """Which user a credential belonged to when this process last verified it.

    A hint names the channel a poll subscribes to before it verifies. A token's
    hint is also *trusted* (the poll skips verifying; see ``is_trusted``) while
    three things hold: it was verified
    during the broker's current auth epoch (this worker's Redis connection has
    been subscribed to the auth channel since before the verification began),
    that epoch is still running, and CREDENTIAL_TRUST_SECONDS have not passed.
    Every announced change (a token revoked or deleted, a user deactivated or
    logged out, a password changed) is published on the auth channel before the
    user's own channel and, on the same connection, reaches this worker before
    the confirmation of any later SUBSCRIBE: ``credentials_changed`` drops the
    user's hints before a poll that subscribes after the change can trust one.
    A change published after the poll subscribed wakes it on its own channel. A
    change heard *while* a credential was being verified may have come after the
    database was read: that verification is not trusted (``remember``).
    Bounded, oldest forgotten first.
    """

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

    def remember(self, credential: Credential, user_id: int, epoch: object | None) -> None:
        with self._lock:
            self._discard(credential)
            self._entries[credential] = _Trust(user_id, epoch, time.monotonic() + conf.CREDENTIAL_TRUST_SECONDS)
            self._by_user.setdefault(user_id, set()).add(credential)
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


def is_trusted(credential: Credential, user_id: int, now: Listening) -> bool:
    """Whether a held poll may skip verifying ``credential`` (see ``_Hints``).

    Tokens only: a token changes only through ApiToken, whose signals announce every
    change. A Django session can end without a signal (it expires, its row is
    deleted or its key rotated by the session engine), so sessions are verified on
    every held poll.
    """
    return (
        credential[0] == "token"
        and conf.CREDENTIAL_TRUST_SECONDS > 0
        and _hints.trusted(credential, user_id, now.epoch)
    )


def remember(credential: Credential, user_id: int, since: Listening) -> None:
    """Note a credential verified now; ``since``: ``listening()`` read before verifying it.

    If any change was announced while it was being verified, the answer may
    predate that change (and the change has come and gone): kept as a hint, not
    trusted. Changes are rare; the next verification is trusted.
    """
    epoch = since.epoch if since.changes == _hints.changes else None
    _hints.remember(credential, user_id, epoch)


def forget_hint(credential: Credential) -> None:
    _hints.forget(credential)


async def still_authenticated(credential: Credential, user_id: int, *, cached: bool = True) -> bool:
    """Whether the credential still belongs to ``user_id``: for polls held while a token
    was revoked or the user logged out.

    The token cache may be used once the poll is subscribed: a revocation drops the
    cache entry after its commit and only then publishes its "auth" message, so a
    stale entry seen now is followed by that message, which is checked uncached.
    """
    since = listening()
    found = await db.read(partial(verified_user_id, credential, cached=cached))
    if found == user_id:
        remember(credential, user_id, since)
    else:
        forget_hint(credential)
    return found == user_id


async def identify(credential: Credential) -> int:
    """The user a poll is for, cheaply: a hint, or a verification now.

    Only for a poll that verifies again once subscribed, unless trusted
    (``is_trusted``); ``authenticate`` for anything answered at once.
    """
    user_id = _hints.user_id(credential)
    if user_id is None:
        user_id = await authenticate_credential(credential)
    return user_id


async def authenticate(request: HttpRequest) -> tuple[int, str]:
    """``(user_id, "token" | "session")`` for the request, verified, or raise NotAuthenticated."""
    credential = credential_of(request)
    return await authenticate_credential(credential), credential[0]


async def authenticate_credential(credential: Credential) -> int:
    since = listening()
    if credential[0] == "token":
        # With other requests' tokens in one look-up: 10,000 clients coming back
        # after a restart all authenticate at once.
        user_id = await batching.batch("tokens", user_ids_for_tokens, None).get(credential[1])
    else:
        user_id = await db.read(verified_user_id, credential)
    if user_id is None:
        if credential[0] == "token":
            raise NotAuthenticated("The bearer token is invalid or has been revoked.")
        raise NotAuthenticated("Log in, or send 'Authorization: Bearer <token>'.")
    remember(credential, user_id, since)
    return user_id
