"""SIGTERM with polls held: they are answered at once, empty and with the same cursor (docs/http.md,
docs/reliability.md), so clients move on; what is sent meanwhile waits in the database for the next
server, and a client that follows its cursor there gets everything exactly once, in order."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import notify
from notify.models import Notification
from tests.server import Response, Server


def hold(replies: dict[Any, Response], key: Any, poll: Any) -> threading.Thread:
    """``replies[key] = poll()`` in a thread of its own."""

    def run() -> None:
        replies[key] = poll()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def sigterm(server: Server, threads: list[threading.Thread]) -> tuple[float, int]:
    """SIGTERM the server; how long until every thread's poll was answered, and the exit status."""
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    for thread in threads:
        thread.join(10)
    answered_within = time.monotonic() - signalled
    return answered_within, server.process.wait(10)


def test_sigterm_answers_held_polls_with_the_same_cursor_within_2_seconds(make_user, token_for):
    users = [make_user() for _ in range(20)]
    tokens = [token_for(user) for user in users]
    notify.send(users[:10], "unread, so that the cursors are not all 0")
    own = Server().start()
    try:
        cursors = [own.poll(token).json()["cursor"] for token in tokens]
        replies: dict[int, Response] = {}
        threads = [
            hold(replies, i, lambda token=token, cursor=cursor: own.poll(token, after=cursor, timeout=30))
            for i, (token, cursor) in enumerate(zip(tokens, cursors, strict=True))
        ]
        own.wait_for_held_polls(20)  # each checked the database and listens
        answered_within, exit_code = sigterm(own, threads)
    finally:
        own.stop()

    assert len(replies) == 20
    for i, cursor in enumerate(cursors):
        assert replies[i].status == 200
        # The documented body: nothing new, the same cursor, the unread count as it is.
        assert replies[i].json() == {"cursor": cursor, "notifications": [], "unread_count": 1 if i < 10 else 0}
        assert replies[i].headers["cache-control"] == "no-store"
    assert cursors[0] == "1" and cursors[-1] == "0"
    assert answered_within < 2
    # uvicorn finishes its shutdown, then re-raises the signal it caught.
    assert exit_code in (0, -signal.SIGTERM)
    assert "Finished server process" in own.log()
    assert "Traceback" not in own.log()


def test_sigterm_answers_held_topic_and_multi_stream_polls_empty_with_the_same_cursors(make_user, token_for):
    user = make_user()
    token = token_for(user)
    room = f"room:shutdown-{os.getpid()}-{os.urandom(3).hex()}"
    notify.publish(room, {"text": "one"}, sender=user)
    [unread] = notify.send(user, "one")
    inbox = str(unread.seq)
    own = Server().start()
    try:
        replies: dict[str, Response] = {}
        threads = [
            hold(
                replies,
                "topic",
                lambda: own.request(
                    "GET",
                    f"/notify/topics/{room}/poll",
                    params={"after": "1", "timeout": "30"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=70,
                ),
            ),
            hold(
                replies,
                "streams",
                lambda: own.poll(token, streams=f"inbox,{room}", after=f"inbox:{inbox},{room}:1", timeout=30),
            ),
        ]
        own.wait_for_held_polls(2, user.pk)
        answered_within, _ = sigterm(own, threads)
    finally:
        own.stop()

    assert replies["topic"].status == replies["streams"].status == 200
    assert replies["topic"].json() == {"cursor": "1", "messages": []}
    assert replies["streams"].json() == {
        "cursor": f"inbox:{inbox},{room}:1",
        "streams": {
            "inbox": {"cursor": inbox, "notifications": [], "unread_count": 1},
            room: {"cursor": "1", "messages": []},
        },
    }
    assert answered_within < 2


def follow(server: Server, token: str, cursor: str, until: int, deadline: float = 20) -> tuple[list[int], str]:
    """Poll from ``cursor`` until notification ``until`` arrives: the ids received, and the cursor."""
    got: list[int] = []
    end = time.monotonic() + deadline
    while until not in got:
        assert time.monotonic() < end, f"{until} not delivered within {deadline} s; got {got}"
        page = server.poll(token, after=cursor, timeout=5).json()
        got += [n["id"] for n in page["notifications"]]
        cursor = page["cursor"]
    return got, cursor


def test_sigterm_with_sends_before_and_during_shutdown_loses_nothing_on_the_next_server(make_user, token_for):
    """Sends before SIGTERM, while the server drains, while no server runs, and after a new one
    started; every client follows its cursor from the old server to the new one: each notification
    exactly once, in order. Quiet users are sent nothing between their hold and its answer, so that
    answer is exactly the documented one; busy users are sent to all along, racing the drain."""
    quiet = [make_user() for _ in range(8)]
    busy = [make_user() for _ in range(4)]
    users = quiet + busy
    tokens = {user.pk: token_for(user) for user in users}
    first = Server().start()
    second: Server | None = None
    received: dict[int, list[int]] = {user.pk: [] for user in users}
    stop_busy = threading.Event()
    busy_sent: list[float] = []  # when each send to the busy users returned (time.monotonic())

    def send_to_busy() -> None:
        from django.db import connections

        try:
            while not stop_busy.is_set():
                notify.send(busy, f"busy {len(busy_sent)}")
                busy_sent.append(time.monotonic())
                time.sleep(0.02)
        finally:
            connections.close_all()

    def follow_busy(user: Any) -> None:
        """A client: follow the cursor on the first server for as long as it answers."""
        while True:
            try:
                page = first.poll(tokens[user.pk], after=cursors[user.pk], timeout=30).json()
            except OSError:
                return  # gone: refused, or closed at shutdown
            received[user.pk] += [n["id"] for n in page["notifications"]]
            cursors[user.pk] = page["cursor"]

    sender = threading.Thread(target=send_to_busy, daemon=True)
    try:
        cursors = {user.pk: first.poll(tokens[user.pk]).json()["cursor"] for user in users}
        notify.send(users, "before")  # before shutdown, not yet polled
        for user in users:  # each client takes it, and holds a poll from its new cursor
            page = first.poll(tokens[user.pk], after=cursors[user.pk], timeout=5).json()
            received[user.pk] += [n["id"] for n in page["notifications"]]
            cursors[user.pk] = page["cursor"]
        held_from = dict(cursors)
        replies: dict[int, Response] = {}
        quiet_polls = [
            hold(replies, user.pk, lambda user=user: first.poll(tokens[user.pk], after=held_from[user.pk], timeout=30))
            for user in quiet
        ]
        first.wait_for_held_polls(len(quiet))
        sender.start()
        busy_clients = [threading.Thread(target=follow_busy, args=(user,), daemon=True) for user in busy]
        for client in busy_clients:
            client.start()
        while len(busy_sent) < 5:  # the busy clients are being answered, and poll again
            time.sleep(0.01)

        assert first.process is not None
        first.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for thread in quiet_polls:
            thread.join(10)
        answered_within = time.monotonic() - signalled
        for user in quiet:  # sent while the first server shuts down
            assert replies[user.pk].status == 200
            notify.send(user, "during shutdown")
        still_running = first.process.poll() is None
        exit_code = first.process.wait(10)
        stopped = time.monotonic()
        for client in busy_clients:
            client.join(10)
        notify.send(quiet, "while no server runs")
        while not any(at > stopped for at in busy_sent):  # the busy users too
            time.sleep(0.01)

        second = Server().start()
        during_drain = sum(signalled < at < stopped for at in busy_sent)
        stop_busy.set()
        sender.join(10)
        finals = {n.recipient_id: n.pk for n in notify.send(users, "after the restart")}
        for user in users:
            got, _ = follow(
                second, tokens[user.pk], cursors[user.pk] if user in busy else held_from[user.pk], finals[user.pk]
            )
            received[user.pk] += got
    finally:
        stop_busy.set()
        first.stop()
        if second is not None:
            second.stop()

    print(
        f"SIGTERM: quiet polls answered within {answered_within:.2f} s; the first server exited "
        f"{stopped - signalled:.2f} s after it (still running when the quiet users were sent to: {still_running}); "
        f"{len(busy_sent)} sends to the busy users, {during_drain} of them between SIGTERM and exit"
    )
    assert answered_within < 2
    assert exit_code in (0, -signal.SIGTERM)
    for user in quiet:
        assert replies[user.pk].json() == {"cursor": held_from[user.pk], "notifications": [], "unread_count": 1}
    for user in users:
        expected = list(Notification.objects.filter(recipient=user).order_by("seq").values_list("pk", flat=True))
        assert received[user.pk] == expected  # each exactly once, in order, across the restart
    for server in (first, second):
        assert "Traceback" not in server.log_path.read_text()
