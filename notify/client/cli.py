"""``python -m notify.client``: print a user's notifications as JSON lines until stopped.

One JSON object per line, flushed at once, so that ``| jq`` or a reading program
sees each notification as it comes. With ``--stream`` (repeatable: ``--stream inbox
--stream room:42``) one held poll follows those streams, and each line is
``{"stream": "<name>", "item": <the notification or topic message>}``.
Errors and retries go to stderr. Ctrl-C or SIGTERM ends it with status 0; a
refused token or request with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

from notify.client.client import NotifyClient
from notify.client.errors import NotifyError

logger = logging.getLogger("notify.client")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m notify.client",
        description="Follow a user's notifications by long polling; print each as a JSON line.",
    )
    parser.add_argument("--url", required=True, help="the site serving notify, e.g. http://127.0.0.1:8000")
    parser.add_argument(
        "--token",
        default=os.environ.get("NOTIFY_TOKEN"),
        help="a token from `manage.py notify_token <username>`; default $NOTIFY_TOKEN, which keeps it out of `ps`",
    )
    parser.add_argument("--cursor", help="resume after this cursor instead of starting from the unread ones")
    parser.add_argument(
        "--cursor-file",
        type=Path,
        help="resume from the cursor in this file if it exists (unless --cursor is given), and keep it up to date",
    )
    parser.add_argument("--timeout", type=float, default=25.0, help="seconds the server may hold a poll (default 25)")
    parser.add_argument("--limit", type=int, help="most notifications per answer (server default 50)")
    parser.add_argument("--path", default="/notify/", help="where the notify app is mounted (default /notify/)")
    parser.add_argument(
        "--stream",
        action="append",
        dest="streams",
        metavar="NAME",
        help="follow this stream: 'inbox' or a topic name; repeat for several (at most 10). "
        "Default: the inbox alone, printing bare notifications",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also log recoveries and cursor moves")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("give --token or set NOTIFY_TOKEN")
    if args.cursor is None and args.cursor_file is not None and args.cursor_file.exists():
        args.cursor = args.cursor_file.read_text().strip() or None
    return args


def save_cursor(path: Path, cursor: str) -> None:
    """Write the cursor so that a crash mid-write leaves the old one, not half of the new."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(cursor + "\n")
    os.replace(partial, path)


def make_client(args: argparse.Namespace) -> NotifyClient:
    """The client the arguments ask for; ValueError, in NotifyClient's words, if they make no sense."""
    on_cursor = None
    if args.cursor_file is not None:
        cursor_file: Path = args.cursor_file

        def on_cursor(cursor: str) -> None:
            save_cursor(cursor_file, cursor)
            logger.info("cursor %s saved to %s", cursor, cursor_file)

    return NotifyClient(
        args.url,
        args.token,
        cursor=args.cursor,
        timeout=args.timeout,
        limit=args.limit,
        path=args.path,
        on_cursor=on_cursor,
        streams=args.streams,
    )


async def follow(client: NotifyClient, out: TextIO) -> int:
    """Print every notification until stopped by a signal (0) or by an error retrying cannot fix (1)."""
    async with client:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Windows: Ctrl-C arrives as KeyboardInterrupt
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, client.stop)
        try:
            async for item in client:
                line = {"stream": item.stream, "item": item.item} if client.streams is not None else item
                out.write(json.dumps(line) + "\n")
                out.flush()
        except NotifyError as error:
            logger.error("%s", error)
            return 1
        except BrokenPipeError:
            # The reader went away (`| head -1`): nothing left to print to.
            return 0
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO if args.verbose else logging.WARNING, format="notify.client: %(message)s"
    )
    try:
        client = make_client(args)
    except ValueError as error:
        logger.error("%s", error)
        return 2
    try:
        return asyncio.run(follow(client, sys.stdout))
    except KeyboardInterrupt:
        return 0
    finally:
        _quiet_broken_pipe()


def _quiet_broken_pipe() -> None:
    """Spare the reader-went-away case Python's "Exception ignored" noise when stdout is flushed at exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
