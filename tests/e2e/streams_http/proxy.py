"""A round-robin TCP proxy on a loopback port, with no affinity at all.

Each connection it accepts goes to the next live backend in turn; a
backend that refuses the connection is skipped. With ``refuse_upgrade``,
a connection whose first request asks for a WebSocket upgrade is answered
``400`` and closed, as by a proxy that strips ``Upgrade`` headers. Runs on
its own event loop in a thread, so sync tests (Playwright) can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

_REFUSAL = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class RoundRobinProxy:
    """Forward connections to ``backends`` (ports), in turn."""

    def __init__(self, backends: list[int], *, refuse_upgrade: bool = False) -> None:
        self.backends = list(backends)
        self.refuse_upgrade = refuse_upgrade
        self.turn = 0
        #: Connections forwarded to each port, and upgrades refused.
        self.forwarded: dict[int, int] = {}
        self.refused_upgrades = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accepted, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> RoundRobinProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def drop(self) -> None:
        """Close every connection open through the proxy now."""

        def close_all() -> None:
            for writer in list(self._writers):
                writer.close()

        self._loop.call_soon_threadsafe(close_all)

    async def _connect(
        self,
    ) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            port = self.backends[self.turn % len(self.backends)]
            self.turn += 1
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                return port, reader, writer
        return None

    def _accepted(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        # A plain function, called as the connection is made: the writer is
        # known to stop() at once (so its socket is closed even if its task
        # never ran), and the task is the proxy's own, not start_server's
        # (whose callback in Python 3.12.1 logs a cancelled task as an error).
        self._writers.add(client_writer)
        task = asyncio.ensure_future(self._handle(client_reader, client_writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            await self._forward(client_reader, client_writer)
        finally:
            self._writers.discard(client_writer)
            client_writer.close()

    async def _forward(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await client_reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            client_writer.close()
            return
        if self.refuse_upgrade and b"upgrade: websocket" in head.lower():
            self.refused_upgrades += 1
            client_writer.write(_REFUSAL)
            with contextlib.suppress(OSError):
                await client_writer.drain()
            client_writer.close()
            return
        backend = await self._connect()
        if backend is None:
            client_writer.close()
            return
        port, reader, writer = backend
        self.forwarded[port] = self.forwarded.get(port, 0) + 1
        try:
            writer.write(head)
            await asyncio.gather(
                _pipe(client_reader, writer), _pipe(reader, client_writer)
            )
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


@contextlib.contextmanager
def proxying(
    backends: list[int], *, refuse_upgrade: bool = False
) -> Iterator[RoundRobinProxy]:
    """Run a :class:`RoundRobinProxy` for the ``with`` block."""
    proxy = RoundRobinProxy(backends, refuse_upgrade=refuse_upgrade).start()
    try:
        yield proxy
    finally:
        proxy.stop()
