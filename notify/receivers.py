"""Model signals: publish saved notifications, forget revoked tokens."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from notify.auth import forget_token
from notify.models import ApiToken, Notification
from notify.sending import publish_auth_changed, publish_on_commit


@receiver(post_save, sender=Notification, dispatch_uid="notify_publish_saved")
def publish_saved(sender: type, instance: Notification, created: bool, using: str, **kwargs: Any) -> None:
    if created:
        publish_on_commit([instance], using=using)


@receiver(post_save, sender=ApiToken, dispatch_uid="notify_forget_token")
def forget_saved_token(sender: type, instance: ApiToken, using: str, **kwargs: Any) -> None:
    # Now, and again after commit: a look-up between the two would otherwise cache
    # the row as it was before this transaction. The "auth" message is registered
    # after the second drop, so it is published only once the cache is clean
    # (notify.auth.still_authenticated relies on that order).
    forget_token(instance.key)
    transaction.on_commit(partial(forget_token, instance.key), using=using)
    if instance.revoked_at is not None:
        publish_auth_changed(instance.user_id, using=using)


@receiver(user_logged_out, dispatch_uid="notify_logged_out")
def stop_polls_of_logged_out_user(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    # logout() sends this signal before it flushes the session: a held poll woken
    # now would find the session still valid. Flush first (logout's own flush
    # after this is harmless).
    if request is not None and hasattr(request, "session"):
        request.session.flush()
    publish_auth_changed(user.pk)
