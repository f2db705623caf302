"""``NotifyClient``: follow one user's notifications (and topics) over long polling, for as long as the caller wants."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import aiohttp

from notify.client.backoff import Backoff
from notify.client.errors import CursorExpiredError, InvalidCursorError, TransientError
from notify.client.responses import (
    Page,
    StreamsPage,
    message_of,
    page_of,
    payload_of,
    streams_page_of,
    unread_count_of,
)

logger = logging.getLogger("notify.client")

# Added to the poll timeout to get the HTTP timeout. The server answers an empty page
# when the poll timeout passes, so a poll still unanswered this much later sits on a
# dead connection (a NAT or proxy that dropped it, a server that vanished), not on a
# quiet stream. The margin covers the server's last database query and the network.
HTTP_MARGIN = 10.0
# For requests the server answers at once (POST /notify/read).
REQUEST_TIMEOUT = 30.0
# A poll that fails after at least this long (and before its timeout) was cut by
# something in between, not refused; also the shortest timeout the client will ask for.
PROXY_CUT_MIN = 1.0
# The most ids one POST /notify/read accepts.
READ_BATCH = 1000
# The most streams one poll may follow (the server's limit).
MAX_STREAMS = 10
INBOX = "inbox"

CursorCallback = Callable[[str], Awaitable[None] | None]


class NotifyClient:
    """Yields one user's notifications, oldest first and each once, for as long as it is iterated.

    ::

        async with NotifyClient("https://example.com", token, cursor=saved, on_cursor=save) as client:
            async for notification in client:
                print(notification["title"])

    Each poll carries the cursor of the previous answer, and the next poll starts the
    moment an answer arrives: the server holds a poll until a notification commits,
    so waiting between polls would only add latency. Only errors wait, with full-jitter
    backoff and never less than the server's ``Retry-After``.

    Without ``cursor`` the first answer is the user's unread notifications (the newest
    ``limit``). ``cursor`` is where to resume so that nothing is missed: it moves past a
    page once the caller asks for the notification after that page's last, which is
    when ``on_cursor`` (a function or coroutine function) is called to persist it. A
    crash while handling a page therefore repeats that page rather than losing it. A
    saved cursor the server refuses (``invalid_cursor``) is logged and dropped, and the
    client starts again from the unread notifications.

    Raises ``AuthenticationError`` on 401 and ``RequestError`` when the server refuses
    the request as malformed (both mean retrying cannot help); network errors, 429 and
    5xx are retried for ever. ``stop()`` ends the iteration promptly, even mid-poll.

    With ``streams`` (``["inbox", "room:42"]``: the user's notifications and topics,
    at most 10) one held poll follows all of them, and the client yields
    ``StreamItem(stream, item)`` pairs: the stream's name and the notification or
    topic message. ``cursor`` is then the compound cursor of all the streams (one
    string, saved and resumed like the inbox's), and a topic whose retention has
    passed its cursor (410) is logged as a warning and resumed from the oldest
    message it still keeps. Without ``streams`` nothing changes: notifications, as
    above. ``RequestError`` (403) if the site refuses a topic.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        cursor: str | None = None,
        timeout: float = 25.0,
        limit: int | None = None,
        on_cursor: CursorCallback | None = None,
        path: str = "/notify/",
        http_timeout: float | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        streams: Iterable[str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}.")
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            # The token itself stays out of the message: messages end up in logs.
            raise ValueError("token must be one word, as `manage.py notify_token` prints it.")
        if not timeout >= 0.001:  # also refuses NaN
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError(f"limit must be a whole number of at least 1, got {limit!r}.")
        if http_timeout is not None and not http_timeout > timeout:
            raise ValueError(
                f"http_timeout must be longer than timeout ({timeout!r} s), or every held poll would be "
                f"cut short; got {http_timeout!r}."
            )
        self.streams = _check_streams(streams) if streams is not None else None
        if self.streams is not None and cursor:
            # A saved compound cursor may name streams no longer followed: the server would refuse them.
            cursor = join_cursor(
                {name: c for name, c in split_cursor(cursor).items() if name in self.streams}, self.streams
            )
        self.cursor = cursor or None
        self.unread_count: int | None = None
        self.timeout = timeout
        self.limit = limit
        self.http_timeout = http_timeout if http_timeout is not None else timeout + HTTP_MARGIN
        self._root = base_url.rstrip("/") + "/" + path.strip("/") + "/"
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._on_cursor = on_cursor
        self._backoff = Backoff(backoff_base, backoff_cap)
        self._session = session
        self._owns_session = False
        self._buffer: deque[Any] = deque()  # Notification, or StreamItem with streams
        self._pending_cursor: str | None = None
        self._task: asyncio.Task[Page | StreamsPage] | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<NotifyClient {self._root} cursor={self.cursor!r}>"

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop, wait for the poll in flight to unwind, and close the HTTP session if this client opened it."""
        self.stop()
        if self._task is not None:
            await asyncio.wait({self._task})
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
            self._owns_session = False

    def stop(self) -> None:
        """End the iteration: the poll in flight is cancelled and the next ``__anext__`` ends it.

        Final. Safe to call from a signal handler installed with ``loop.add_signal_handler``;
        from another thread use ``loop.call_soon_threadsafe(client.stop)``.
        """
        self._stopping = True
        if self._task is not None:
            self._task.cancel()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:  # Notification, or StreamItem with streams
        # The caller is back for more: whatever it was handed is handled.
        await self._commit()
        while not self._buffer:
            if self._stopping:
                raise StopAsyncIteration
            page = await self._next_page()
            if page is None:
                raise StopAsyncIteration
            if isinstance(page, StreamsPage):
                self._buffer.extend(page.items)
                if page.unread_count is not None:
                    self.unread_count = page.unread_count
            else:
                self._buffer.extend(page.notifications)
                self.unread_count = page.unread_count
            self._pending_cursor = page.cursor
            await self._commit()  # an empty page can still move the cursor (the first one does)
        if self._stopping:
            raise StopAsyncIteration
        return self._buffer.popleft()

    async def _commit(self) -> None:
        """Move ``cursor`` past the current page once all of it has been handed out."""
        if self._buffer or self._pending_cursor is None:
            return
        cursor, self._pending_cursor = self._pending_cursor, None
        if cursor == self.cursor:
            return
        self.cursor = cursor
        if self._on_cursor is not None:
            result = self._on_cursor(cursor)
            if inspect.isawaitable(result):
                await result

    async def _next_page(self) -> Page | StreamsPage | None:
        """The next page, or None if ``stop()`` was called while waiting for it.

        The poll runs as a task of its own so that ``stop()`` can cancel it without
        cancelling the caller; a cancellation of the caller itself still propagates.
        """
        task = asyncio.ensure_future(self._poll_until_answered())
        self._task = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stopping and task.cancelled() and (current is None or not current.cancelling()):
                return None
            raise
        finally:
            self._task = None

    async def _poll_until_answered(self) -> Page | StreamsPage:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                page = await self._poll(self.cursor)
            except InvalidCursorError as error:
                if self.cursor is None:
                    raise  # not about a cursor we sent: starting again would loop
                if self.streams is not None and error.stream in split_cursor(self.cursor):
                    logger.warning(
                        "cursor of stream %r is unusable, starting that stream again from its newest: %s",
                        error.stream,
                        error,
                    )
                    self._set_stream_cursor(error.stream, None)
                    continue
                logger.warning(
                    "cursor %r is unusable, starting again from the unread notifications: %s", self.cursor, error
                )
                self.cursor = None
                continue  # at once: the server answered, it is not in trouble
            except CursorExpiredError as error:
                stream = error.stream or (self.streams[0] if self.streams and len(self.streams) == 1 else None)
                if self.streams is None or stream not in self.streams or self.cursor is None:
                    raise
                logger.warning(
                    "topic %r no longer keeps the messages after cursor %r (messages were missed); "
                    "resuming from the oldest it keeps, %r",
                    stream,
                    split_cursor(self.cursor).get(stream),
                    error.oldest_cursor,
                )
                self._set_stream_cursor(stream, error.oldest_cursor)
                continue
            except TransientError as error:
                self._shorten_polls_cut_by_a_proxy(error, loop.time() - started)
                # Jitter on top of Retry-After, so that clients told the same value spread out.
                delay = (error.retry_after or 0.0) + self._backoff.next_delay()
                logger.warning("poll failed (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                continue
            if self._backoff.failures:
                logger.info("poll answered again after %d failure(s)", self._backoff.failures)
                self._backoff.reset()
            return page

    def _shorten_polls_cut_by_a_proxy(self, error: TransientError, lasted: float) -> None:
        """Ask for shorter polls when something between us and the server cuts them.

        A proxy or firewall that limits how long a request may live answers 502 or
        504, or drops the connection, before the poll's timeout. Polls that keep
        dying like that, after a while rather than at once, get a timeout of 80% of
        the lifetime observed, so they end (empty) before the cut and deliver again.
        """
        cut = error.status in (502, 504) or (error.status is None and lasted < self.http_timeout - 1)
        if cut and PROXY_CUT_MIN <= lasted < self.timeout * 0.9:
            shorter = max(PROXY_CUT_MIN, lasted * 0.8)
            logger.warning("polls are cut after %.1f s (%s); asking for %.1f s polls", lasted, error, shorter)
            self.timeout = shorter

    def _set_stream_cursor(self, stream: str, cursor: str | None) -> None:
        assert self.streams is not None
        cursors = split_cursor(self.cursor or "")
        if cursor is None:
            cursors.pop(stream, None)
        else:
            cursors[stream] = cursor
        self.cursor = join_cursor(cursors, self.streams) or None

    async def _poll(self, after: str | None) -> Page | StreamsPage:
        params = {"timeout": _seconds(self.timeout)}
        if self.streams is not None:
            params["streams"] = ",".join(self.streams)
        if after is not None:
            params["after"] = after
        if self.limit is not None:
            params["limit"] = str(self.limit)
        url = self._root + "poll"
        payload = await self._request("GET", url, self.http_timeout, params=params)
        if self.streams is not None:
            return streams_page_of(payload, url, self.streams)
        return page_of(payload, url)

    async def publish(self, topic: str, data: dict[str, Any]) -> dict[str, Any]:
        """Post a message to a topic; return it as polls will deliver it.

        One attempt, no retries (a retried post could be published twice). Raises
        ``RequestError`` if the site refuses (403: not allowed; 400: a bad name or
        data), ``TransientError`` on network errors and 5xx.
        """
        if not isinstance(data, dict):
            raise ValueError(f"data must be a dict, got {type(data).__name__}.")
        url = self._root + "topics/" + quote(topic, safe="") + "/publish"
        return message_of(await self._request("POST", url, REQUEST_TIMEOUT, json={"data": data}), url)

    async def mark_read(self, ids: Iterable[int]) -> int:
        """Mark these notifications read; return the user's unread count.

        One attempt per batch of 1000 ids, no retries: whether a failed mark is worth
        retrying is the caller's call. Raises ``TransientError`` on network errors.
        """
        ids = list(ids)
        bad = [i for i in ids if type(i) is not int or i <= 0]
        if bad:
            raise ValueError(f"mark_read takes notification ids (positive whole numbers), got {bad[0]!r}.")
        unread = 0
        for start in range(0, max(len(ids), 1), READ_BATCH):
            unread = await self._read({"ids": ids[start : start + READ_BATCH]})
        return unread

    async def mark_all_read(self) -> int:
        """Mark all the user's notifications read; return the unread count (0 unless new ones came)."""
        return await self._read({"all": True})

    async def _read(self, body: dict[str, Any]) -> int:
        url = self._root + "read"
        count = unread_count_of(await self._request("POST", url, REQUEST_TIMEOUT, json=body), url)
        self.unread_count = count
        return count

    async def _request(self, method: str, url: str, timeout: float, **options: Any) -> dict[str, Any]:
        if self._session is None or self._session.closed:
            raise RuntimeError(
                "NotifyClient has no open HTTP session: use `async with NotifyClient(...) as client:` or pass session=."
            )
        try:
            async with self._session.request(
                method,
                url,
                headers=self._headers,
                # A redirect would carry the token elsewhere, or land on a login page.
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
                **options,
            ) as response:
                body = await response.read()
        except TimeoutError as error:
            raise TransientError(f"{method} {url}: no answer within {timeout:g} s") from error
        except aiohttp.ClientError as error:
            raise TransientError(f"{method} {url}: {error or type(error).__name__}") from error
        return payload_of(response.status, response.headers, body, url)


def _seconds(value: float) -> str:
    """Seconds as the server's parameter accepts them: plain decimals, no exponent."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def split_cursor(compound: str) -> dict[str, str]:
    """``{"inbox": "6", "room:42": "17"}`` from ``"inbox:6,room:42:17"`` (the cursor follows the last colon)."""
    cursors: dict[str, str] = {}
    for part in compound.split(",") if compound else []:
        name, colon, cursor = part.rpartition(":")
        if colon and name:
            cursors[name] = cursor
    return cursors


def join_cursor(cursors: dict[str, str], order: list[str]) -> str:
    return ",".join(f"{name}:{cursors[name]}" for name in order if name in cursors)


def _check_streams(streams: Iterable[str]) -> list[str]:
    if isinstance(streams, str):
        raise ValueError(f"streams must be a list of stream names such as ['inbox', 'room:42'], got {streams!r}.")
    names = list(streams)
    if not names or len(names) > MAX_STREAMS:
        raise ValueError(f"streams must name 1 to {MAX_STREAMS} streams, got {len(names)}.")
    for name in names:
        if not isinstance(name, str) or not name or "," in name or any(c.isspace() for c in name):
            raise ValueError(f"streams must be 'inbox' or topic names (no commas or spaces), got {name!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"streams must name each stream once, got {names!r}.")
    return names
