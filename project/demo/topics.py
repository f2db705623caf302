"""Who may use which topic in the demo: NOTIFY["TOPIC_PERMISSION"] points here."""

from __future__ import annotations

from typing import Any


def can_use(user: Any, topic: str, action: str) -> bool:
    """Chat rooms (``room:<anything>``) are open to every signed-in user, to read and to post;
    rooms named ``room:staff-...`` to staff only; nothing else is open."""
    if not (user.is_authenticated and topic.startswith("room:") and action in ("read", "post")):
        return False
    return user.is_staff or not topic.startswith("room:staff-")
