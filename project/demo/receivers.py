"""Turning the demo's own model signals into notifications: the pattern README shows.

``notify.send`` is safe to call from any signal: inside a transaction it
publishes when the transaction commits, and not at all if it rolls back.
"""

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

import notify
from project.demo.models import Task


@receiver(pre_save, sender=Task, dispatch_uid="demo_task_remember_assignee")
def remember_assignee(sender: type, instance: Task, **kwargs: Any) -> None:
    previous = (
        Task.objects.filter(pk=instance.pk).values_list("assignee_id", flat=True).first() if instance.pk else None
    )
    instance._previous_assignee_id = previous  # type: ignore[attr-defined]


@receiver(post_save, sender=Task, dispatch_uid="demo_task_notify_assignee")
def notify_assignee(sender: type, instance: Task, **kwargs: Any) -> None:
    if instance.assignee_id and instance.assignee_id != getattr(instance, "_previous_assignee_id", None):
        notify.send(
            instance.assignee_id,
            f"Task assigned: {instance.title}",
            "You have a new task in the demo.",
            kind="task",
            data={"task": instance.pk},
        )
