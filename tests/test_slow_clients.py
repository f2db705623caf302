"""Issue 13, case 10: clients that send their request slowly, behind the shipped nginx.

uvicorn keeps a connection whose request head never completes, or whose body never
arrives, for ever (it has no timer for either, docs/reliability.md "Slow clients"), and
such connections count towards no notify limit. deploy/nginx.conf cuts them with
`client_header_timeout` and `client_body_timeout`; these tests run the shipped config
with those two directives' values shortened to ``TIMEOUT`` (tests/nginx.py), so that
removing either directive (nginx's default is 60 s) fails them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import selectors
import socket
import time
from dataclasses import dataclass

import pytest

import notify
from tests import threads
from tests.nginx import Nginx, require_nginx

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 3.0  # seconds: this test's value for the shipped client_header_timeout and client_body_timeout
SLACK = 2.0  # how much later than TIMEOUT nginx may close a connection (its timers, a busy machine)
HALF_HEADS = 100  # as many as in the report
DRIPPING_HEADS = 20
STALLED_BODIES = 100


@pytest.fixture(scope="module", autouse=True)
def nginx_installed() -> None:
    require_nginx()


@dataclass
class Slow:
    """One slow client's connection: what it sent, when, and what became of it."""

    kind: str
    sock: socket.socket
    opened: float
    drips: bool = False
    closed: float | None = None  # when recv() first saw the end (EOF or a reset)
    received: bytes = b""  # any answer at all (nginx sends none when it cuts for a timeout)


def connect(port: int, kind: str, data: bytes, *, drips: bool = False) -> Slow:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened = time.monotonic()
    sock.sendall(data)
    sock.setblocking(False)
    return Slow(kind, sock, opened, drips)


def wait_until_closed(slow: list[Slow], deadline: float) -> None:
    """Read every connection until the server closes it or ``deadline`` passes; every half
    second, send one more header line on the dripping ones (a slowloris that keeps talking)."""
    selector = selectors.DefaultSelector()
    for client in slow:
        selector.register(client.sock, selectors.EVENT_READ, client)
    next_drip = time.monotonic()
    while selector.get_map() and time.monotonic() < deadline:
        if time.monotonic() >= next_drip:
            next_drip += 0.5
            for client in slow:
                if client.drips and client.closed is None:
                    with contextlib.suppress(OSError):  # closed by nginx: the read below sees it
                        client.sock.send(b"X-Drip: 1\r\n")
        for key, _ in selector.select(timeout=0.1):
            client = key.data
            try:
                data = client.sock.recv(4096)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data:
                client.received += data
                continue
            client.closed = time.monotonic()
            selector.unregister(client.sock)
    selector.close()


def app_connections(port: int) -> int:
    """Established TCP connections the app server listening on ``port`` has accepted."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
                count += 1
    return count


def test_slow_header_and_slow_body_clients_are_cut_by_nginx_while_polls_go_on(server, make_user, token_for):
    user = make_user()
    token = token_for(user)
    proxy = Nginx([f"127.0.0.1:{server.port}"], client_timeouts=f"{TIMEOUT:g}s").start()
    slow: list[Slow] = []
    try:
        poll_head = f"GET /notify/poll?after=0 HTTP/1.1\r\nHost: notify.test\r\nAuthorization: Bearer {token}\r\n"
        for i in range(HALF_HEADS):
            # Half a head (a tenth of them not even the request line's end, and some nothing at all).
            data = poll_head.encode()[: 0 if i % 10 == 0 else 20 if i % 10 == 1 else len(poll_head)]
            slow.append(connect(proxy.port, "half head", data))
        for _ in range(DRIPPING_HEADS):
            slow.append(connect(proxy.port, "dripping head", poll_head.encode(), drips=True))
        for _ in range(STALLED_BODIES):
            # A whole head announcing 64 bytes of body, and then 3 of them.
            head = (
                f"POST /notify/read HTTP/1.1\r\nHost: notify.test\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\nContent-Length: 64\r\n\r\n"
            )
            slow.append(connect(proxy.port, "stalled body", head.encode() + b"[1,"))
        last_opened = slow[-1].opened

        # Meanwhile a poll through the same nginx is held and answered as ever.
        answers: list[tuple[int, dict]] = []

        def poll() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=20)
            try:
                conn.request("GET", "/notify/poll?after=0&timeout=15", headers={"Authorization": f"Bearer {token}"})
                reply = conn.getresponse()
                answers.append((reply.status, json.loads(reply.read())))
            finally:
                conn.close()

        poller = threads.start(poll)
        server.wait_for_held_polls(1, user.pk, timeout=TIMEOUT)
        notify.send(user, "still served")
        poller.join(10)
        answered = time.monotonic()
        # The stalled bodies never reached the app: nginx reads a body whole before passing
        # the request on, so the app has accepted no connection for them.
        passed_on = app_connections(server.port)

        wait_until_closed(slow, deadline=last_opened + TIMEOUT + SLACK)
    finally:
        for client in slow:
            client.sock.close()
        proxy.stop()

    assert len(answers) == 1, answers
    status, page = answers[0]
    assert status == 200, page
    assert [n["title"] for n in page["notifications"]] == ["still served"]
    assert passed_on < STALLED_BODIES / 2, f"{passed_on} connections to the app while the bodies were stalled"
    for kind in ("half head", "dripping head", "stalled body"):
        clients = [client for client in slow if client.kind == kind]
        still_open = sum(client.closed is None for client in clients)
        waited = TIMEOUT + SLACK
        assert still_open == 0, f"{still_open} of {len(clients)} {kind} connections still open after {waited:g} s"
        lived = sorted(client.closed - client.opened for client in clients if client.closed is not None)
        # Cut by the timeout (not refused at once), the whole head timed from the connection
        # (dripping does not restart it); and without an answer.
        assert lived[0] >= TIMEOUT - 0.5, f"{kind}: closed after {lived[0]:.2f} s, before the {TIMEOUT:g} s timeout"
        assert all(client.received == b"" for client in clients), {client.received[:80] for client in clients}
    # Every slow client was still connected when the poll was answered.
    assert answered < min(client.closed for client in slow if client.closed is not None)
