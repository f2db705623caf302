"""Who is polling: the Django session, or ``Authorization: Bearer <token>``."""

from __future__ import annotations

import logging
from collections import OrderedDict
from functools import partial
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth import get_user
from django.core.cache import caches
from django.http import HttpRequest

from notify import db
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


def _cache():  # type: ignore[no-untyped-def]
    alias = conf.CACHE_ALIAS
    return caches[alias] if alias else None


def user_id_for_token(raw: str, *, cached: bool = True) -> int | None:
    """The user id a valid, unrevoked token belongs to, or None. Synchronous."""
    parts = ApiToken.split(raw)
    if parts is None:
        return None
    key, secret = parts
    cache = _cache() if cached else None
    entry = None
    if cache is not None:
        try:
            entry = cache.get(token_cache_key(key))
        except Exception:  # a cache outage must not lock users out
            logger.warning("notify: token cache unavailable", exc_info=True)
    if entry is None:
        entry = (
            ApiToken.objects.active()
            .filter(key=key, user__is_active=True)
            .values_list("user_id", "secret_hash")
            .first()
        )
        if entry is None:
            return None
        if cache is not None:
            try:
                cache.set(token_cache_key(key), entry, conf.TOKEN_CACHE_SECONDS)
            except Exception:
                logger.warning("notify: token cache unavailable", exc_info=True)
    user_id, secret_hash = entry
    return user_id if ApiToken.secret_matches(secret, secret_hash) else None


def forget_token(key: str) -> None:
    """Drop a token from the cache (on revoke), so it stops working at once."""
    cache = _cache()
    if cache is not None:
        try:
            cache.delete(token_cache_key(key))
        except Exception:
            logger.warning("notify: token cache unavailable; a revoked token may work "
                           "until its cache entry expires", exc_info=True)


def verified_user_id(request: HttpRequest, *, cached: bool = True) -> int | None:
    """Whose token or session the request carries, verified now (None: nobody). Synchronous.

    ``cached=False`` reads the token from the database: for re-checks after an
    "auth" message, whose revocation the cache may not show yet.
    """
    header = request.headers.get("Authorization")
    if header is not None:
        return user_id_for_token(header.partition(" ")[2].strip(), cached=cached)
    return user_id_for_session(request)


async def still_authenticated(request: HttpRequest, user_id: int, *, cached: bool = True) -> bool:
    """Whether the request's token or session still belongs to ``user_id``: for polls
    held while a token was revoked or the user logged out.

    The token cache may be used once the poll is subscribed: a revocation drops the
    cache entry after its commit and only then publishes its "auth" message, so a
    stale entry seen now is followed by that message, which is checked uncached.
    """
    found = await db.run(partial(verified_user_id, request, cached=cached))
    if found != user_id:
        forget_hint(request)
    return found == user_id


def _credential(request: HttpRequest) -> tuple[str, str]:
    """("token", raw) or ("session", key): what identifies the caller; raises NotAuthenticated."""
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


class _Hints:
    """Which user a credential belonged to when it was last verified, in this process.

    Only a hint: it saves a look-up before a poll subscribes (the poll needs the
    user id to know its channel), and every held poll verifies its credential again
    once it is subscribed (notify.views.hold). Bounded, oldest forgotten first.
    """

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._users: OrderedDict[tuple[str, str], int] = OrderedDict()

    def get(self, credential: tuple[str, str]) -> int | None:
        return self._users.get(credential)

    def remember(self, credential: tuple[str, str], user_id: int) -> None:
        self._users[credential] = user_id
        if len(self._users) > self.size:
            self._users.popitem(last=False)

    def forget(self, credential: tuple[str, str]) -> None:
        self._users.pop(credential, None)


_hints = _Hints()


def forget_hint(request: HttpRequest) -> None:
    try:
        _hints.forget(_credential(request))
    except NotAuthenticated:
        pass


async def identify(request: HttpRequest) -> int:
    """The user a poll is for, cheaply: a hint, or a verification now.

    Only for a poll that verifies again once subscribed; ``authenticate`` for
    anything answered at once.
    """
    user_id = _hints.get(_credential(request))
    if user_id is None:
        user_id, _ = await authenticate(request)
    return user_id


async def authenticate(request: HttpRequest) -> tuple[int, str]:
    """``(user_id, "token" | "session")`` for the request, verified, or raise NotAuthenticated."""
    credential = _credential(request)
    if credential[0] == "token":
        user_id = await db.run(user_id_for_token, credential[1])
        if user_id is None:
            raise NotAuthenticated("The bearer token is invalid or has been revoked.")
        _hints.remember(credential, user_id)
        return user_id, "token"
    if hasattr(request, "auser"):  # AuthenticationMiddleware ran
        user = await request.auser()
        session_user_id = user.pk if user.is_authenticated else None
    else:  # served by notify.asgi, outside the middleware
        session_user_id = await db.run(user_id_for_session, request)
    if session_user_id is None:
        raise NotAuthenticated("Log in, or send 'Authorization: Bearer <token>'.")
    _hints.remember(credential, session_user_id)
    return session_user_id, "session"


def user_id_for_session(request: HttpRequest) -> int | None:
    """The logged-in user's id from the session cookie, as SessionMiddleware and
    AuthenticationMiddleware would find it (session auth hash checked). Synchronous."""
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    engine = import_module(settings.SESSION_ENGINE)
    # get_user() reads only .session; a stand-in leaves the request's own session alone.
    user = get_user(SimpleNamespace(session=engine.SessionStore(session_key)))  # type: ignore[arg-type]
    return user.pk if user.is_authenticated else None
