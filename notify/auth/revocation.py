"""The ends of credentials, announced: a held poll of an ended credential stops at once.

Each end is announced after its transaction commits, on the process-wide auth
channel (every worker drops its trust in that user's credentials: notify.auth.trust)
and then on the user's own channel (their held polls wake and verify again). The
ends announced: a token revoked or deleted; a user deactivated, deleted, logged out,
or given a new password. ``listen()`` connects them, from ``NotifyConfig.ready()``.

A session deleted by other means (``session.flush()`` outside ``logout()``, rows
deleted from the session store) is not announced: a ``post_delete`` receiver on the
session model would stop Django deleting sessions in bulk (``clearsessions`` would
load every expired row into memory), and cache or file stores send nothing. Such an
end reaches held polls within CREDENTIAL_TRUST_SECONDS; code that ends sessions
itself calls ``announce(user_id)``.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from notify import pages
from notify.auth import forget_token
from notify.auth.trust import credentials_changed
from notify.conf import conf
from notify.models import ApiToken

logger = logging.getLogger("notify")


def announce(user_id: int, *, using: str = "default") -> None:
    """Tell every worker, and the user's held polls, that a credential of the user ended
    (after commit): call it when your code ends a user's sessions by other means than
    ``logout()`` (say, deleting them from the session store)."""
    from notify.broker import get_broker

    def publish() -> None:
        credentials_changed(b"%d" % user_id)  # this process at once, whatever happens to the publish
        try:
            # The auth channel first: a worker that hears it stops trusting the
            # user's credentials before a later SUBSCRIBE of theirs is confirmed
            # (notify.auth.trust); the user's channel wakes their polls held already.
            get_broker().publish_many(
                [
                    (conf.AUTH_CHANNEL, b"%d" % user_id),
                    (conf.channel_for_user(user_id), pages.AUTH_CHANGED),
                ]
            )
        except Exception:
            logger.exception("notify: could not tell held polls of user %s that their credentials changed", user_id)

    transaction.on_commit(publish, using=using)


def token_saved(sender: type, instance: ApiToken, using: str, **kwargs: Any) -> None:
    # A new generation for the token's cache entry, now and again after commit: every
    # entry written before the second is outdated, also one that a look-up which read the
    # row before this commit writes after it (notify.auth.GENERATION_SECONDS). The "auth"
    # message is registered after the second, so it is published only once the cache
    # is clean (notify.auth.confirm relies on that order).
    forget_token(instance.key)
    transaction.on_commit(partial(forget_token, instance.key), using=using)
    if instance.revoked_at is not None:
        announce(instance.user_id, using=using)


def token_deleted(sender: type, instance: ApiToken, using: str, **kwargs: Any) -> None:
    # A deleted token must stop at once like a revoked one, not live on in the
    # token cache (also when its user is deleted: the cascade sends this too).
    forget_token(instance.key)
    transaction.on_commit(partial(forget_token, instance.key), using=using)
    announce(instance.user_id, using=using)


def user_saved(sender: type, instance: Any, using: str, update_fields: Any = None, **kwargs: Any) -> None:
    if not getattr(instance, "is_active", True):
        if update_fields is not None and "is_active" not in update_fields:
            return
        # The token cache holds "token -> user" for a minute; a user made inactive
        # must lose access at once, and polls already held must be answered 401.
        keys = list(ApiToken.objects.using(using).filter(user_id=instance.pk).values_list("key", flat=True))
        for key in keys:
            forget_token(key)
            transaction.on_commit(partial(forget_token, key), using=using)
        announce(instance.pk, using=using)
    elif getattr(instance, "_password", None) is not None:
        # A new password ends the user's other sessions (their auth hash no longer
        # matches). set_password() keeps the raw password in _password until save() completes.
        announce(instance.pk, using=using)


def user_deleted(sender: type, instance: Any, using: str, **kwargs: Any) -> None:
    # Their sessions outlive them in the session store; their polls must not.
    announce(instance.pk, using=using)


def logged_out(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    # logout() sends this signal before it flushes the session: a held poll woken
    # now would find the session still valid. Flush first (logout's own flush
    # after this is harmless).
    if request is not None and hasattr(request, "session"):
        request.session.flush()
    announce(user.pk)


def listen() -> None:
    """Connect every announced end, and hand the auth channel's messages to notify.auth.trust."""
    from notify.broker import listen_to_auth_channel

    listen_to_auth_channel(credentials_changed)
    post_save.connect(token_saved, sender=ApiToken, dispatch_uid="notify_token_saved")
    post_delete.connect(token_deleted, sender=ApiToken, dispatch_uid="notify_token_deleted")
    post_save.connect(user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="notify_user_saved")
    post_delete.connect(user_deleted, sender=settings.AUTH_USER_MODEL, dispatch_uid="notify_user_deleted")
    user_logged_out.connect(logged_out, dispatch_uid="notify_logged_out")
