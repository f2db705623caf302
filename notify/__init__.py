"""notify: real-time notifications for Django over HTTP long polling.

Django imports this module before the app registry is ready, so the public
functions import the real code only when they are called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime

    from notify.models import Announcement, Notification, TopicMessage

__all__ = ["send", "asend", "announce", "aannounce", "cancel", "reschedule", "publish", "apublish"]


def send(recipients: Any, title: str, body: str = "", **options: Any) -> list[Notification]:
    """Notify users; see ``notify.sending.send``."""
    from notify.sending import send as _send

    return _send(recipients, title, body, **options)


async def asend(recipients: Any, title: str, body: str = "", **options: Any) -> list[Notification]:
    """The async twin of ``send``."""
    from notify.sending import asend as _asend

    return await _asend(recipients, title, body, **options)


def announce(title: str, body: str = "", **options: Any) -> Announcement:
    """Notify every user at once, stored once; see ``notify.sending.announce``."""
    from notify.sending import announce as _announce

    return _announce(title, body, **options)


async def aannounce(title: str, body: str = "", **options: Any) -> Announcement:
    """The async twin of ``announce``."""
    from asgiref.sync import sync_to_async

    from notify.sending import announce as _announce

    return await sync_to_async(_announce)(title, body, **options)


def cancel(notification_or_id: Any, *, using: str = "default") -> bool:
    """Delete a reminder not yet delivered; see ``notify.scheduling.cancel``."""
    from notify.scheduling import cancel as _cancel

    return _cancel(notification_or_id, using=using)


def reschedule(notification_or_id: Any, deliver_at: datetime.datetime, *, using: str = "default") -> bool:
    """Move a reminder not yet delivered; see ``notify.scheduling.reschedule``."""
    from notify.scheduling import reschedule as _reschedule

    return _reschedule(notification_or_id, deliver_at, using=using)


def publish(topic: str, data: dict[str, Any], *, sender: Any = None, **options: Any) -> TopicMessage:
    """Post a message to a topic stream; see ``notify.topics.publish``."""
    from notify.topics import publish as _publish

    return _publish(topic, data, sender=sender, **options)


async def apublish(topic: str, data: dict[str, Any], *, sender: Any = None, **options: Any) -> TopicMessage:
    """The async twin of ``publish``."""
    from notify.topics import apublish as _apublish

    return await _apublish(topic, data, sender=sender, **options)
