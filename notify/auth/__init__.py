"""Who is polling: the Django session, or ``Authorization: Bearer <token>``.

Verified here (tokens through the token cache, sessions as Django's middleware
would), batched with other polls' verifications (notify.batching); trusted while
this worker hears every announced change (notify.auth.trust); ended by the
announcements of notify.auth.revocation.
"""

from __future__ import annotations

import logging
from importlib import import_module
from secrets import token_hex
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import BaseCache, caches
from django.http import HttpRequest
from django.utils import timezone

from notify import batching, db
from notify.auth.trust import (
    Credential,
    Listening,
    Verified,
    _Hints,
    _hints,
    credentials_changed,
    forget_hint,
    hinted_user_id,
    is_trusted,
    listening,
    remember,
)
from notify.conf import conf
from notify.models import ApiToken

__all__ = [
    "Credential",
    "Listening",
    "NotAuthenticated",
    "Verified",
    "_Hints",
    "_hints",
    "authenticate",
    "authenticate_credential",
    "confirm",
    "credential_of",
    "credentials_changed",
    "forget_hint",
    "forget_token",
    "identify",
    "is_trusted",
    "listening",
    "remember",
    "user_id_for_session",
    "user_id_for_token",
    "user_ids_for_tokens",
    "verified_user_id",
    "verify",
]

logger = logging.getLogger("notify")


class NotAuthenticated(Exception):
    """The request carries no valid session or token; ``detail`` says which."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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


# --- tokens (synchronous: notify.db's threads) ------------------------------------------


# The token cache holds "key -> (user id, secret hash, generation)". A look-up that misses
# reads the token's generation, then the database, then writes the entry with the
# generation it read first; an entry counts only while its generation is still the
# token's. Every change to a token (or its user) sets a new generation once it commits
# (forget_token). So a look-up that read the row before a revocation committed, and
# writes it after the revocation's drop, writes it under the old generation: it is never
# used (issue 13, case 11; a plain delete let such a write revive the token for
# TOKEN_CACHE_SECONDS). A generation is a fresh random value, not a counter, so that
# one lost from the cache (evicted, expired) never comes back equal to an older entry's.
# It outlives the entries written before it by a day: a stale write would have to come a
# day after the change it missed. (Left: a token without a generation when the look-up
# read, whose new one is evicted within TOKEN_CACHE_SECONDS of the stale write; a cache
# that evicts keys it was given a day to keep is under pressure notify cannot fix.)
GENERATION_SECONDS = 24 * 3600


def token_cache_key(key: str) -> str:
    return f"notify:token:{key}"


def token_generation_key(key: str) -> str:
    return f"notify:token-generation:{key}"


def _cache() -> BaseCache | None:
    alias = conf.CACHE_ALIAS
    return caches[alias] if alias else None


def user_id_for_token(raw: str, *, cached: bool = True) -> int | None:
    """The user id a valid, unrevoked token belongs to, or None."""
    return user_ids_for_tokens([raw], cached=cached).get(raw)


def user_ids_for_tokens(raws: list[str], *, cached: bool = True) -> dict[str, int]:
    """The user id of each valid, unrevoked token among ``raws`` (the others left out),
    with one cache round trip and one query for the tokens the cache did not have.
    ``cached=False``: from the database only."""
    secrets: dict[str, list[tuple[str, str]]] = {}
    for raw in raws:
        parts = ApiToken.split(raw)
        if parts is not None:
            secrets.setdefault(parts[0], []).append((raw, parts[1]))
    cache = _cache() if cached else None
    entries: dict[str, tuple[int, str]] = {}
    generations: dict[str, str | None] | None = None  # read before the database; None: unknown
    if cache is not None and secrets:
        try:
            # One round trip, read at once (MGET): each entry with its token's generation now.
            got = cache.get_many([k for key in secrets for k in (token_cache_key(key), token_generation_key(key))])
        except Exception:  # a cache outage must not lock users out
            logger.warning("notify: token cache unavailable", exc_info=True)
        else:
            generations = {key: got.get(token_generation_key(key)) for key in secrets}
            for key in secrets:
                entry = got.get(token_cache_key(key))
                if isinstance(entry, (tuple, list)) and len(entry) == 3 and entry[2] == generations[key]:
                    entries[key] = (entry[0], entry[1])
    missing = [key for key in secrets if key not in entries]
    if missing:
        rows = (
            ApiToken.objects.active()
            .filter(key__in=missing, user__is_active=True)
            .values_list("key", "user_id", "secret_hash")
        )
        found = {key: (user_id, secret_hash) for key, user_id, secret_hash in rows}
        entries.update(found)
        if cache is not None and generations is not None and found:
            # Under the generations read before the query: if a change committed since,
            # these entries are stale, and already outdated by its new generation.
            fresh = {token_cache_key(key): (*entry, generations[key]) for key, entry in found.items()}
            try:
                cache.set_many(fresh, conf.TOKEN_CACHE_SECONDS)
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
    """Outdate a token's cache entry (on any change to it), so a revoked token stops at once:
    a new generation, which every entry written before does not carry (see GENERATION_SECONDS)."""
    cache = _cache()
    if cache is not None:
        try:
            cache.set(token_generation_key(key), token_hex(8), GENERATION_SECONDS)
        except Exception:
            logger.warning(
                "notify: token cache unavailable; a revoked token may work until its cache entry expires", exc_info=True
            )


def _verify_tokens(raws: list[str]) -> dict[str, Verified]:
    return {raw: Verified(user_id) for raw, user_id in user_ids_for_tokens(raws).items()}


# --- sessions (synchronous: notify.db's threads) ----------------------------------------


def _session_store() -> type[SessionBase]:
    store: type[SessionBase] = import_module(settings.SESSION_ENGINE).SessionStore
    return store


def user_id_for_session(session_key: str) -> int | None:
    """The logged-in user's id for a session key, as SessionMiddleware and
    AuthenticationMiddleware would find it (session auth hash checked)."""
    # get_user() reads only .session: a stand-in request is enough.
    user = get_user(SimpleNamespace(session=_session_store()(session_key)))  # type: ignore[arg-type]  # a stand-in request
    return user.pk if user.is_authenticated else None


def _session_lifetimes(keys: list[str]) -> dict[str, float]:
    """Seconds each session has left, for session engines that keep an expiry date in the
    database (``db``, ``cached_db``: their model's ``expire_date``); empty for the others."""
    store = _session_store()
    get_model_class = getattr(store, "get_model_class", None)
    if get_model_class is None:
        return {}
    now = timezone.now()
    rows = get_model_class().objects.filter(session_key__in=keys).values_list("session_key", "expire_date")
    return {key: (expire_date - now).total_seconds() for key, expire_date in rows}


def _verify_sessions(keys: list[str]) -> dict[str, Verified]:
    """Each session's user, verified one by one exactly as Django's middleware would, in one
    trip; with the time each has left where the session engine knows it."""
    users = {key: user_id for key in keys if (user_id := user_id_for_session(key)) is not None}
    lifetimes = _session_lifetimes(list(users)) if users else {}
    return {key: Verified(user_id, lifetimes.get(key)) for key, user_id in users.items()}


def verified_user_id(credential: Credential, *, cached: bool = True) -> int | None:
    """Whose token or session this is, verified now (None: nobody). Synchronous.

    ``cached=False`` reads a token from the database: for re-checks after an
    "auth" message, whose revocation the cache may not show yet.
    """
    kind, value = credential
    if kind == "token":
        return user_id_for_token(value, cached=cached)
    return user_id_for_session(value)


# --- verifying, in the event loop ----------------------------------------------------


async def verify(credential: Credential) -> Verified | None:
    """Whose the credential is, verified now, with other polls' verifications in one trip:
    10,000 clients coming back after a restart all verify at once."""
    kind, value = credential
    if kind == "token":
        return await batching.ask("tokens", _verify_tokens, None, value)
    return await batching.ask("sessions", _verify_sessions, None, value)


async def confirm(credential: Credential, user_id: int, since: Listening, *, cached: bool = True) -> bool:
    """Whether the credential still belongs to ``user_id``, verified now; remembered (trusted,
    see notify.auth.trust) if so, forgotten if not. ``since``: ``listening()`` read before.

    ``cached=False`` after an "auth" message: the token cache may not show the
    revocation yet (a revocation drops the cache entry after its commit and only
    then publishes its message, so a stale entry seen before is followed by it).
    """
    verified = await verify(credential) if cached else await db.read(_verify_uncached, credential)
    if verified is None or verified.user_id != user_id:
        forget_hint(credential)
        return False
    remember(credential, verified, since)
    return True


def _verify_uncached(credential: Credential) -> Verified | None:
    kind, value = credential
    if kind == "token":
        user_id = user_id_for_token(value, cached=False)
        return None if user_id is None else Verified(user_id)
    return _verify_sessions([value]).get(value)


async def still_authenticated(credential: Credential, user_id: int, *, cached: bool = True) -> bool:
    """Whether the credential still belongs to ``user_id``: for polls held while it may have ended."""
    return await confirm(credential, user_id, listening(), cached=cached)


async def identify(credential: Credential) -> int:
    """The user a poll is for, cheaply: a hint, or a verification now.

    Only for a poll that verifies again once subscribed, unless trusted
    (``is_trusted``); ``authenticate_credential`` for anything answered at once.
    """
    user_id = hinted_user_id(credential)
    if user_id is None:
        user_id = await authenticate_credential(credential)
    return user_id


async def authenticate(request: HttpRequest) -> tuple[int, str]:
    """``(user_id, "token" | "session")`` for the request, verified, or raise NotAuthenticated."""
    credential = credential_of(request)
    return await authenticate_credential(credential), credential[0]


async def authenticate_credential(credential: Credential) -> int:
    since = listening()
    verified = await verify(credential)
    if verified is None:
        if credential[0] == "token":
            raise NotAuthenticated("The bearer token is invalid or has been revoked.")
        raise NotAuthenticated("Log in, or send 'Authorization: Bearer <token>'.")
    remember(credential, verified, since)
    return verified.user_id
