"""SIGTERM with polls held: they are answered at once, so clients move on."""

from __future__ import annotations

import signal
import threading
import time

from tests.server import Server


def test_sigterm_answers_held_polls_with_the_same_cursor_within_2_seconds(make_user, token_for, django_db_blocker):
    users = [make_user() for _ in range(20)]
    tokens = [token_for(user) for user in users]
    own = Server().start()
    try:
        cursors = [own.poll(token).json()["cursor"] for token in tokens]
        replies: list = []

        def hold(token: str, cursor: str) -> None:
            replies.append((cursor, own.poll(token, after=cursor, timeout=30)))

        threads = [threading.Thread(target=hold, args=pair) for pair in zip(tokens, cursors, strict=True)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)  # all held
        own.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for thread in threads:
            thread.join(10)
        answered_within = time.monotonic() - signalled
        exit_code = own.process.wait(10)
    finally:
        own.stop()

    assert len(replies) == 20
    for cursor, reply in replies:
        assert reply.status == 200
        assert reply.json()["notifications"] == [] and reply.json()["cursor"] == cursor
    assert answered_within < 2
    # uvicorn finishes its shutdown, then re-raises the signal it caught.
    assert exit_code in (0, -signal.SIGTERM)
    assert "Finished server process" in own.log()
