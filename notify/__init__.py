"""notify: real-time notifications for Django over HTTP long polling.

Django imports this module before the app registry is ready, so the public
functions import the real code only when they are called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from notify.models import Notification

__all__ = ["send", "asend"]


def send(recipients: Any, title: str, body: str = "", **options: Any) -> list[Notification]:
    """Notify users; see ``notify.sending.send``."""
    from notify.sending import send as _send

    return _send(recipients, title, body, **options)


async def asend(recipients: Any, title: str, body: str = "", **options: Any) -> list[Notification]:
    """The async twin of ``send``."""
    from notify.sending import asend as _asend

    return await _asend(recipients, title, body, **options)
