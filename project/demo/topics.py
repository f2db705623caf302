"""Who may use which topic in the demo: NOTIFY["TOPIC_PERMISSION"] points here."""

from __future__ import annotations

from typing import Any


def can_use(user: Any, topic: str, action: str) -> bool:
    """Chat rooms (``room:<anything>``) are open to every signed-in user, to read and to post; nothing else is."""
    return user.is_authenticated and topic.startswith("room:") and action in ("read", "post")
