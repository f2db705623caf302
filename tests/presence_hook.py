"""A TOPIC_PERMISSION for tests/test_presence.py: the demo's, and every topic open to post for signed-in
users, as a permissive project's hook would be. Publishing to "presence:<topic>" must still be refused."""

from __future__ import annotations

from typing import Any

from project.demo.topics import can_use as demo_can_use


def can_use(user: Any, topic: str, action: str) -> bool:
    return demo_can_use(user, topic, action) or (action == "post" and user.is_authenticated)
