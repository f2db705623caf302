"""A reverse proxy on loopback that cuts long polls short, as a proxy's read timeout does.

Requests for ``/notify/poll?after=...`` that the server has not answered within
``cut_after`` seconds get a 504, or have their connection dropped, by turns;
everything else passes through. One request per connection (``Connection: close``
both ways) keeps the relaying trivial.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from dataclasses import dataclass, field

from tests.server import free_port

GATEWAY_TIMEOUT = (
    b"HTTP/1.1 504 Gateway Timeout\r\ncontent-type: text/html\r\ncontent-length: 23\r\n"
    b"connection: close\r\n\r\n<h1>504 Gateway Timeout"
)


@dataclass
class CuttingProxy:
    upstream_port: int
    cut_after: float = 2.0
    port: int = field(default_factory=free_port)
    cuts: list[str] = field(default_factory=list)  # "504" or "drop", in order
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _turn: itertools.cycle[str] = field(default_factory=lambda: itertools.cycle(["504", "drop"]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CuttingProxy:
        ready = threading.Event()

        async def main() -> None:
            server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
            self._stopping = asyncio.Event()
            ready.set()
            async with server:
                await self._stopping.wait()
            # Connections still being relayed (a held poll) end with the proxy.
            for task in self._handlers:
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(main())
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="cutting-proxy")
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("the test proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(5)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await asyncio.wait_for(client_reader.readuntil(b"\r\n\r\n"), 30)
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            length = 0
            kept = [lines[0]]
            for line in lines[1:]:
                if not line:
                    continue
                name = line.split(":", 1)[0].strip().lower()
                if name == "content-length":
                    length = int(line.split(":", 1)[1])
                if name not in ("connection", "keep-alive"):
                    kept.append(line)
            body = await client_reader.readexactly(length) if length else b""
            request = ("\r\n".join([*kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1") + body

            reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            writer.write(request)
            await writer.drain()
            long_poll = target.startswith("/notify/poll") and "after=" in target
            try:
                response = await asyncio.wait_for(reader.read(), self.cut_after if long_poll else 30)
            except TimeoutError:
                how = next(self._turn)
                self.cuts.append(how)
                if how == "504":
                    client_writer.write(GATEWAY_TIMEOUT)
                    await client_writer.drain()
                return  # "drop": close without a word
            finally:
                writer.close()
            client_writer.write(response)
            await client_writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            client_writer.close()
            self._handlers.discard(task)
