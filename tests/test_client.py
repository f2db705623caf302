"""notify.client end to end: against the real server where it can, a scripted one where the server must misbehave."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

import notify
from notify.client import AuthenticationError, NotifyClient, RequestError
from notify.client.backoff import Backoff, parse_retry_after
from tests.client_fakes import FakeNotify, following, hang, json_line, page, refuse, until
from tests.server import ROOT

# Log records of the client, captured by caplog.
CLIENT_LOGGER = "notify.client"


send = sync_to_async(notify.send)


@sync_to_async
def send_at_once(user: Any, titles: list[str]) -> None:
    """Commit all of these in one transaction: one wake-up for more than one page."""
    with transaction.atomic():
        for title in titles:
            notify.send(user, title)


# --- against the real server ----------------------------------------------------------------------------------------


async def test_notifications_arrive_in_order_and_once_while_the_client_repolls(server, alice, token):
    async with following(server.url, token, timeout=1, limit=5) as (client, got):
        await until(lambda: client.cursor is not None)  # it has its cursor: nothing sent now can be missed
        expected = []
        for i in range(3):
            await send(alice, f"spaced {i}")
            expected.append(f"spaced {i}")
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.2)  # a poll times out empty; the client polls again with the same cursor
        burst = [f"burst {i}" for i in range(12)]  # more than limit: three pages, one after the other
        await send_at_once(alice, burst)
        expected += burst
        sent = time.monotonic()
        await send(alice, "last")
        expected.append("last")

        await got.wait_for(len(expected))
        await asyncio.sleep(0.3)  # time for anything extra to show up

    assert got.titles == expected
    assert len({n["id"] for n in got.received}) == len(expected)
    assert got.arrived[-1] - sent < 5  # re-polled at once, no sleep between polls
    assert client.unread_count == len(expected)


async def test_resuming_from_a_saved_cursor_gets_only_what_came_after(server, alice, token):
    saved: list[str] = []
    async with following(server.url, token, timeout=5, on_cursor=saved.append) as (client, got):
        await until(lambda: saved)
        await send(alice, "seen")
        await got.wait_for(1)
        # The loop came back for more after "seen": the cursor moved past it.
        await until(lambda: len(saved) == 2)
    assert client.cursor == saved[-1]

    await send(alice, "missed 1")
    await send(alice, "missed 2")

    async with following(server.url, token, cursor=saved[-1], timeout=5) as (client, got):
        await got.wait_for(2)
        await asyncio.sleep(0.3)
    # "seen" is still unread, so only the cursor keeps it out.
    assert got.titles == ["missed 1", "missed 2"]


async def test_a_cursor_the_server_refuses_is_reported_and_the_client_starts_again_from_the_unread(
    server, alice, token, caplog
):
    await send(alice, "waiting")
    caplog.set_level(logging.WARNING, logger=CLIENT_LOGGER)

    async with following(server.url, token, cursor="999999", timeout=5) as (client, got):
        await got.wait_for(1)

    assert got.titles == ["waiting"]
    assert client.cursor != "999999"
    assert any("'999999' is unusable" in record.getMessage() for record in caplog.records)


async def test_a_refused_token_raises_authentication_error(server):
    async with NotifyClient(server.url, "ntf_0123456789abcdef_not-a-secret") as client:
        with pytest.raises(AuthenticationError, match="401 not_authenticated.*notify_token"):
            async for _ in client:
                pass


async def test_a_token_revoked_while_a_poll_is_held_raises_authentication_error(server, alice):
    from notify.models import ApiToken

    api_token, raw = await sync_to_async(ApiToken.issue)(alice)
    async with following(server.url, raw, timeout=20) as (client, got):
        await until(lambda: client.cursor is not None)
        await asyncio.sleep(0.2)
        await sync_to_async(api_token.revoke)()
        with pytest.raises(AuthenticationError, match="revoked"):
            await asyncio.wait_for(got.task, 10)


async def test_a_request_the_server_calls_malformed_raises_request_error(server, token):
    async with NotifyClient(server.url, token, limit=1000) as client:
        with pytest.raises(RequestError, match="400 invalid_limit") as raised:
            await anext(client)
    assert raised.value.status == 400 and raised.value.code == "invalid_limit"


async def test_stop_ends_the_iteration_promptly_while_a_poll_is_held(server, token):
    async with following(server.url, token, timeout=20) as (client, got):
        await until(lambda: client.cursor is not None)
        await asyncio.sleep(0.3)  # the poll is held now
        started = time.monotonic()
        client.stop()
        await asyncio.wait_for(got.task, 10)
        assert time.monotonic() - started < 5  # not the 20 s of the held poll
    assert got.task.exception() is None
    assert client._session is None  # the session it opened is closed


async def test_mark_read_and_mark_all_read_answer_the_unread_count(server, alice, token):
    sent = [(await send(alice, f"n{i}"))[0] for i in range(3)]
    async with NotifyClient(server.url, token) as client:
        assert await client.mark_read([sent[0].pk]) == 2
        assert await client.mark_all_read() == 0
    assert client.unread_count == 0


# --- against a scripted server ----------------------------------------------------------------------------------------


async def test_each_answer_is_followed_at_once_by_a_poll_with_its_cursor():
    answers = [page("5"), page("6", 6), page("6"), page("7", 7)]
    async with FakeNotify(answers) as fake, following(fake.url, "ntf_token", timeout=25, limit=10) as (_, got):
        await got.wait_for(2)
        await until(lambda: len(fake.polls) == 5)

    assert [poll.query.get("after") for poll in fake.polls] == [None, "5", "6", "6", "7"]
    assert all(poll.query["timeout"] == "25" and poll.query["limit"] == "10" for poll in fake.polls)
    assert all(poll.authorization == "Bearer ntf_token" for poll in fake.polls)
    gaps = [later.started - earlier.started for earlier, later in itertools.pairwise(fake.polls)]
    assert max(gaps) < 1  # generous: the classic loop sleeps 5 s here


async def test_the_cursor_moves_past_a_page_only_when_the_caller_comes_back_for_more():
    saved: list[str] = []
    async with (
        FakeNotify([page("7", 6, 7)]) as fake,
        NotifyClient(fake.url, "ntf_token", cursor="5", on_cursor=saved.append) as client,
    ):
        assert (await anext(client))["id"] == 6
        assert (await anext(client))["id"] == 7
        assert (client.cursor, saved) == ("5", [])  # a crash while handling 7 repeats the page, loses nothing
        more = asyncio.create_task(anext(client))
        await until(lambda: client.cursor == "7")
        assert saved == ["7"]
        await until(lambda: len(fake.polls) == 2)
        client.stop()
        with pytest.raises(StopAsyncIteration):
            await more
    assert fake.polls[1].query["after"] == "7"


async def test_a_503_with_retry_after_is_waited_out_before_polling_again():
    answers = [refuse(503, "server_busy", retry_after="1"), page("1", 1)]
    async with FakeNotify(answers) as fake, following(fake.url, "ntf_token", cursor="0") as (_, got):
        await got.wait_for(1)

    first, second = fake.polls[:2]
    assert second.started - first.started >= 1.0
    assert second.query["after"] == "0"


async def test_server_errors_and_unreadable_answers_are_retried_with_backoff(caplog):
    caplog.set_level(logging.WARNING, logger=CLIENT_LOGGER)
    answers = [
        refuse(500, "boom"),
        refuse(502, "", body="<html>Bad Gateway</html>"),
        refuse(429, "too_many_polls", retry_after="0"),
        page("3", 3),
    ]
    async with (
        FakeNotify(answers) as fake,
        following(fake.url, "ntf_token", cursor="2", backoff_base=0.05, backoff_cap=0.2) as (client, got),
    ):
        await got.wait_for(1)

    assert [poll.query["after"] for poll in fake.polls[:4]] == ["2"] * 4
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 3
    assert "500 boom" in retries[0] and "Bad Gateway" in retries[1] and "429 too_many_polls" in retries[2]
    assert client._backoff.failures == 0  # a good answer resets it


async def test_a_poll_unanswered_past_the_http_timeout_is_dropped_and_retried():
    answers = [hang(30), page("1", 1)]
    options = {"cursor": "0", "timeout": 0.2, "http_timeout": 0.5, "backoff_base": 0.05, "backoff_cap": 0.1}
    async with FakeNotify(answers) as fake, following(fake.url, "ntf_token", **options) as (_, got):
        await got.wait_for(1)

    assert fake.polls[1].started - fake.polls[0].started >= 0.5


async def test_an_unreachable_server_is_retried_until_stopped(caplog):
    caplog.set_level(logging.WARNING, logger=CLIENT_LOGGER)
    async with FakeNotify([]) as fake:
        url = fake.url  # a port that was just free, and is closed again below
    async with following(url, "ntf_token", backoff_base=0.05, backoff_cap=0.1) as (_, got):
        await until(lambda: sum("retrying in" in r.getMessage() for r in caplog.records) >= 3)
    assert got.task.exception() is None  # stopped, not failed


def test_backoff_draws_below_a_doubling_ceiling_up_to_the_cap_and_resets():
    highest = Backoff(base=1, cap=8, draw=lambda low, high: high)
    assert [highest.next_delay() for _ in range(5)] == [1, 2, 4, 8, 8]
    highest.reset()
    assert highest.next_delay() == 1
    jittered = Backoff(base=1, cap=8)
    assert all(0 <= jittered.next_delay() <= 8 for _ in range(50))


def test_retry_after_is_read_as_seconds_or_an_http_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- the command line -------------------------------------------------------------------------------------------------


def start_cli(*args: str, token: str) -> tuple[subprocess.Popen[bytes], queue.Queue[bytes]]:
    """``python -m notify.client`` with the token in the environment; its stdout lines arrive on the queue."""
    env = {**os.environ, "NOTIFY_TOKEN": token}
    process = subprocess.Popen(
        [sys.executable, "-m", "notify.client", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue[bytes] = queue.Queue()

    def read(stream: IO[bytes]) -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, args=(process.stdout,), daemon=True).start()
    return process, lines


def end(process: subprocess.Popen[bytes], signum: int | None = None) -> tuple[int, str]:
    """Signal the process (by its PID) if asked, and return its status and stderr."""
    try:
        if signum is not None:
            process.send_signal(signum)
        status = process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    return status, process.stderr.read().decode()


def test_cli_prints_notifications_as_json_lines_and_exits_0_on_sigterm(server, alice, token):
    process, lines = start_cli("--url", server.url, "--timeout", "5", token=token)
    try:
        notify.send(alice, "first", "from the test", data={"k": 1})
        first = json_line(lines.get(timeout=15))
        notify.send(alice, "second")
        second = json_line(lines.get(timeout=15))
    finally:
        status, stderr = end(process, signal.SIGTERM)

    assert (first["title"], first["body"], first["data"]) == ("first", "from the test", {"k": 1})
    assert second["title"] == "second"
    assert (status, stderr) == (0, "")


def test_cli_keeps_its_cursor_file_and_resumes_from_it_after_ctrl_c(server, alice, token, tmp_path):
    cursor_file = tmp_path / "cursor"
    process, lines = start_cli("--url", server.url, "--cursor-file", str(cursor_file), token=token)
    try:
        notify.send(alice, "before")
        assert json_line(lines.get(timeout=15))["title"] == "before"
        deadline = time.monotonic() + 10
        while not (cursor_file.exists() and cursor_file.read_text().strip() != "0") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cursor_file.read_text().strip() != "0", "the cursor file was not moved past 'before'"
    finally:
        status, stderr = end(process, signal.SIGINT)
    assert (status, stderr) == (0, "")

    notify.send(alice, "while stopped")
    process, lines = start_cli("--url", server.url, "--cursor-file", str(cursor_file), token=token)
    try:
        assert json_line(lines.get(timeout=15))["title"] == "while stopped"  # not "before", still unread
    finally:
        end(process, signal.SIGTERM)


def test_cli_reports_a_refused_token_on_stderr_and_exits_1(server):
    process, lines = start_cli("--url", server.url, token="ntf_0123456789abcdef_not-a-secret")
    status, stderr = end(process)
    assert status == 1
    assert "401 not_authenticated" in stderr and "not-a-secret" not in stderr
    assert lines.empty()


def test_the_client_imports_no_django():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "import sys, notify.client.cli; sys.exit(any(m.split('.')[0] == 'django' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, env=env).returncode == 0
