"""Model signals: publish saved notifications, forget revoked tokens."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
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


@receiver(post_delete, sender=ApiToken, dispatch_uid="notify_forget_deleted_token")
def forget_deleted_token(sender: type, instance: ApiToken, using: str, **kwargs: Any) -> None:
    # A deleted token must stop at once like a revoked one, not live on in the
    # token cache (also when its user is deleted: the cascade sends this too).
    forget_token(instance.key)
    transaction.on_commit(partial(forget_token, instance.key), using=using)
    publish_auth_changed(instance.user_id, using=using)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="notify_deactivated_user")
def stop_tokens_of_deactivated_user(
    sender: type, instance: Any, using: str, update_fields: Any = None, **kwargs: Any
) -> None:
    # The token cache holds "token -> user" for a minute; a user made inactive
    # must lose access at once, and polls already held must be answered 401.
    if getattr(instance, "is_active", True) or (update_fields is not None and "is_active" not in update_fields):
        return
    keys = list(ApiToken.objects.using(using).filter(user_id=instance.pk).values_list("key", flat=True))
    for key in keys:
        forget_token(key)
        transaction.on_commit(partial(forget_token, key), using=using)
    publish_auth_changed(instance.pk, using=using)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="notify_password_changed")
def stop_polls_of_changed_password(sender: type, instance: Any, using: str, **kwargs: Any) -> None:
    # A new password ends the user's other sessions (their auth hash no longer
    # matches): their held polls must re-verify now, not at their timeout.
    # set_password() keeps the raw password in _password until save() completes.
    if getattr(instance, "_password", None) is not None and getattr(instance, "is_active", True):
        publish_auth_changed(instance.pk, using=using)


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
