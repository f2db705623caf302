from django.conf import settings
from django.db import models


class Task(models.Model):
    """A to-do item of the demo: assigning it to someone notifies them (see receivers.py)."""

    title = models.CharField(max_length=200)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    done = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.title
