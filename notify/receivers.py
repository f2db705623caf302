"""Model signals: publish saved notifications, fold grouped ones. (Credential ends: notify.auth.revocation.)"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from notify import grouping
from notify.models import Notification, notifications_created, notifications_numbered
from notify.sending import publish_on_commit


@receiver(post_save, sender=Notification, dispatch_uid="notify_publish_saved")
def publish_saved(sender: type, instance: Notification, created: bool, using: str, **kwargs: Any) -> None:
    if created:
        publish_on_commit([instance], using=using)


@receiver(notifications_created, sender=Notification, dispatch_uid="notify_publish_created")
def publish_created(sender: type, notifications: list[Notification], using: str, **kwargs: Any) -> None:
    publish_on_commit(notifications, using=using)


@receiver(notifications_numbered, sender=Notification, dispatch_uid="notify_collapse_groups")
def collapse_groups(sender: type, notifications: list[Notification], using: str, **kwargs: Any) -> None:
    grouping.collapse(notifications, using=using)
