"""Clients for tests/integration/test_daphne_flow.py: broadcast readers, a staller.

:func:`broadcast` runs ``tests.slow_clients_project`` on daphne and sends
``COUNT`` messages, ``RATE`` a second, to ``READERS`` clients that read
everything and to one :class:`SlowClient` that stops reading once
subscribed; it reads again only once every reader has everything (or 30 s
have passed), and the :class:`Broadcast` says what each got and what the
server's output said.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import ServerProcess

HOST = "127.0.0.1"
APP = "tests.slow_clients_project:application"
REDIS = "redis://127.0.0.1:6379"
GROUP = "slow"
STREAM = "slow.0"
READERS = 50
COUNT = 80
RATE = 20.0
PAD = "x" * 16384
QUEUE = 20  # the stream queue and the layer's capacity, in messages
# The server's write buffers for one connection (asyncio's high-water mark
# is 64 KiB) and the connection's own objects: an upper bound.
WRITE_BUFFERS = 256 * 1024


def tcp_queues() -> dict[tuple[int, int], tuple[int, int]]:
    """Return (send queue, receive queue) in bytes of the IPv4 TCP sockets.

    Keyed by (local port, remote port), from ``/proc/net/tcp``.
    """
    sockets = {}
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            local = int(fields[1].rsplit(":", 1)[1], 16)
            remote = int(fields[2].rsplit(":", 1)[1], 16)
            send, receive = (int(part, 16) for part in fields[4].split(":"))
            sockets[local, remote] = (send, receive)
    return sockets


@dataclass
class LogCounts:
    """What the server's output says about slow clients."""

    catch_ups: int = 0
    closes: int = 0
    layer_dropped: int = 0
    errors: list[str] = field(default_factory=list)


_CATCH_UP = re.compile(r"does not keep up \(\d+ publications")
_CLOSE = re.compile(r"Closing \S+ with \d+: it does not keep up")
_FULL = re.compile(r"group_send to .*? were full; .*?; (\d+) dropped since the last")
_MORE = re.compile(r"(\d+) more message\(s\) lost since the last report: full members")


def parse_log(text: str) -> LogCounts:
    """Count the slow-client warnings and the error lines of a server's output."""
    counts = LogCounts()
    for line in text.splitlines():
        if _CLOSE.search(line):
            counts.closes += 1
        elif _CATCH_UP.search(line):
            counts.catch_ups += 1
        elif (match := _FULL.search(line)) or (match := _MORE.search(line)):
            counts.layer_dropped += int(match[1])
        elif line.startswith(("ERROR", "CRITICAL", "Traceback")):
            counts.errors.append(line)
    return counts


async def _connect(url: str, sock: socket.socket | None = None) -> Any:
    from websockets.asyncio.client import connect

    return await connect(
        url,
        sock=sock,
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=30,
        close_timeout=1,
    )


async def _subscribe(ws: Any) -> None:
    await ws.send(json.dumps({"kind": "subscribe", "id": 1, "stream": STREAM}))
    async with asyncio.timeout(30):
        frame = json.loads(await ws.recv())
    assert frame.get("kind") == "subscribed", frame


def _number(text: str | bytes, stream: bool) -> tuple[dict[str, Any], int | None]:
    """Return a received frame and the broadcast number it carries, if any."""
    frame = json.loads(text)
    if stream:
        if frame.get("kind") != "publication":
            return frame, None
        return frame, frame["data"]["n"]
    return frame, frame["n"]


class Reader:
    """A client that reads everything; done once the last message arrived."""

    def __init__(self, url: str, stream: bool) -> None:
        self.url = url
        self.stream = stream
        self.received = 0
        self.ws: Any = None
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.ws = await _connect(self.url)
        if self.stream:
            await _subscribe(self.ws)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for text in self.ws:
                _, n = _number(text, self.stream)
                if n is None:
                    continue
                self.received += 1
                if n == COUNT - 1:
                    self.done.set()


@dataclass
class Stalled:
    """What the client that stopped reading got once it read again.

    Attributes:
        held_bytes: What came from the server's memory: the characters
            received before the first sign of loss, less what the kernel
            held for the connection when the broadcast was over.
        after_frames: Messages received once it read again.
        close_code: The close code received, or ``None`` if still open.
        caught_up: It received the last message.
        gaps: Jumps in the sequence that no ``lost`` frame announced.
        duplicates: Messages received twice or out of order.
        lost_frames: ``lost`` frames received.
    """

    held_bytes: int = 0
    after_frames: int = 0
    close_code: int | None = None
    caught_up: bool = False
    gaps: int = 0
    duplicates: int = 0
    lost_frames: int = 0


class SlowClient:
    """A client with a small receive buffer that stops reading once subscribed."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.ws: Any = None
        self.port = 0
        self.kernel_bytes = 0

    async def open(self, url: str, server_port: int) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        # Both before connect(): the window and the MSS are in the SYN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (HOST, server_port))
            self.port = sock.getsockname()[1]
            self.ws = await _connect(url, sock)
        except BaseException:
            sock.close()
            raise
        if self.stream:
            await _subscribe(self.ws)
        self.ws.transport.pause_reading()

    def note_kernel(self, server_port: int) -> None:
        """Keep how many bytes the kernel holds for the connection."""
        queues = tcp_queues()
        sent, _ = queues.get((server_port, self.port), (0, 0))
        _, received = queues.get((self.port, server_port), (0, 0))
        self.kernel_bytes = sent + received

    async def read_again(self, quiet: float = 2.0) -> Stalled:
        """Read until the last message, a close, or ``quiet`` seconds of nothing."""
        from websockets.exceptions import ConnectionClosed

        outcome = Stalled()
        last, signalled, whole, received = -1, False, 0, 0
        self.ws.transport.resume_reading()
        try:
            while not outcome.caught_up:
                async with asyncio.timeout(quiet):
                    text = await self.ws.recv()
                outcome.after_frames += 1
                received += len(text)
                frame, n = _number(text, self.stream)
                if frame.get("kind") == "lost":
                    outcome.lost_frames += 1
                    signalled = True
                    whole = whole or received - len(text)
                    continue
                assert n is not None, frame
                if n <= last:
                    outcome.duplicates += 1
                    continue
                if n > last + 1 and not signalled:
                    outcome.gaps += 1
                    whole = whole or received - len(text)
                last, signalled = n, False
                outcome.caught_up = n == COUNT - 1
        except TimeoutError:
            pass
        except ConnectionClosed as closed:
            outcome.close_code = closed.rcvd.code if closed.rcvd else 1006
        outcome.held_bytes = max(0, (whole or received) - self.kernel_bytes)
        return outcome


@dataclass
class Broadcast:
    """What one broadcast run saw."""

    readers_complete: int
    stalled: Stalled
    log: LogCounts
    frame_bytes: int


@contextlib.asynccontextmanager
async def _publisher(
    stream: bool, prefix: str
) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[object]]]:
    """Yield ``publish(data)`` to the stream or the group, on the run's prefix."""
    if stream:
        from django_realtime.streams.positions import encode_data
        from django_realtime.streams.stores.base import PolicyTable
        from django_realtime.streams.stores.redis import RedisHistoryStore

        policies = {"*": {"max_count": 1000, "max_bytes": None, "max_age": None}}
        store = RedisHistoryStore(REDIS, prefix=prefix, policies=PolicyTable(policies))

        async def publish_stream(data: dict[str, Any]) -> object:
            return await store.publish(STREAM, encode_data(data))

        try:
            yield publish_stream
        finally:
            await store.flush()
            await store.close()
        return

    from django_realtime.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer([REDIS], prefix=f"{prefix}-layer")

    async def publish_group(data: dict[str, Any]) -> object:
        await layer.group_send(GROUP, {"type": "slow.message", "data": data})
        return None

    try:
        yield publish_group
    finally:
        await layer.flush()
        await layer.close()


def env_for(prefix: str, **more: str) -> dict[str, str]:
    return {"SLOW_REDIS": REDIS, "SLOW_PREFIX": prefix, **more}


async def broadcast(tmp_path: Path, path: str, policy: str = "catch_up") -> Broadcast:
    """Broadcast ``COUNT`` messages on daphne to ``READERS`` and one slow client."""
    stream = path == "stream"
    prefix = f"slow-{uuid.uuid4().hex[:10]}"
    env = env_for(
        prefix,
        SLOW_POLICY=policy,
        SLOW_MAX_QUEUED=str(QUEUE),
        SLOW_CAPACITY=str(QUEUE),
    )
    server = await asyncio.to_thread(
        ServerProcess, "daphne", APP, env, tmp_path / "daphne.log"
    )
    url = server.url("/ws/streams/" if stream else "/ws/group/")
    readers = [Reader(url, stream) for _ in range(READERS)]
    slow = SlowClient(stream)
    try:
        async with _publisher(stream, prefix) as publish:
            for start in range(0, READERS, 25):
                await asyncio.gather(*(r.open() for r in readers[start : start + 25]))
            await slow.open(url, server.port)
            loop = asyncio.get_running_loop()
            begin = loop.time()
            for n in range(COUNT):
                await publish({"n": n, "pad": PAD})
                # Pacing the broadcast, not waiting for an event.
                await asyncio.sleep(max(0.0, begin + (n + 1) / RATE - loop.time()))
            # Every reader gets everything while the slow client still stalls.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await asyncio.gather(*(reader.done.wait() for reader in readers))
            slow.note_kernel(server.port)
            stalled = await slow.read_again()
            server.check_alive()
    finally:
        for client in [*readers, slow]:
            abort(client.ws)
        await asyncio.gather(
            *(r.task for r in readers if r.task is not None), return_exceptions=True
        )
        server.kill()
    return Broadcast(
        readers_complete=sum(reader.received == COUNT for reader in readers),
        stalled=stalled,
        log=parse_log(server.output),
        frame_bytes=len(json.dumps({"n": COUNT, "pad": PAD})),
    )


def abort(ws: Any) -> None:
    """Drop ``ws``'s TCP connection, if there is one."""
    if ws is not None:
        with contextlib.suppress(Exception):
            ws.transport.abort()
