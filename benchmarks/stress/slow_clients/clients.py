"""The clients of ``benchmarks.stress.slow_clients``, and what the kernel says of them.

:class:`Reader` reads everything and times each publication;
:class:`SlowClient` stops reading once subscribed and reads again at the
end, counting what arrives. Both speak to the run's server over the
``websockets`` library; :class:`Broadcast` is what a run's clients share.
``/proc`` gives the kernel's queues of a connection and the machine's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from typing import Any

from benchmarks.stress.slow_clients.report import SlowOutcome

__all__ = [
    "STREAM",
    "Broadcast",
    "Reader",
    "SlowClient",
    "abort",
    "busy_seconds",
    "tcp_sockets",
]

STREAM = "bench.0"


# The states of tcp_states.h, as /proc/net/tcp gives them.
_TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}


def busy_seconds() -> float:
    """Return the CPU time all processes have used, from ``/proc/stat``."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(field) for field in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: all but idle and iowait.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def tcp_sockets() -> dict[tuple[int, int], tuple[str, int, int]]:
    """Return (state, send queue, receive queue) of IPv4 TCP sockets.

    Keyed by (local port, remote port), from ``/proc/net/tcp``; the queues
    are in bytes.
    """
    sockets = {}
    with open("/proc/net/tcp", encoding="ascii") as table_file:
        next(table_file)
        for line in table_file:
            fields = line.split()
            local = int(fields[1].rsplit(":", 1)[1], 16)
            remote = int(fields[2].rsplit(":", 1)[1], 16)
            state = _TCP_STATES.get(int(fields[3], 16), fields[3])
            send, receive = (int(part, 16) for part in fields[4].split(":"))
            sockets[local, remote] = (state, send, receive)
    return sockets


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


async def _subscribe(ws: Any, path: str) -> None:
    """Subscribe to the stream (stream path); wait for the answer."""
    if path != "stream":
        return
    await ws.send(json.dumps({"kind": "subscribe", "id": 1, "stream": STREAM}))
    async with asyncio.timeout(30):
        frame = json.loads(await ws.recv())
    if frame.get("kind") != "subscribed":
        raise RuntimeError(f"Expected a 'subscribed' frame, got {frame!r}.")


class Reader:
    """A client that reads everything and times each publication."""

    def __init__(self, broadcast: Broadcast) -> None:
        self.broadcast = broadcast
        self.received = 0
        self.last = -1
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    async def open(self, url: str) -> None:
        self.ws = await _connect(url)
        await _subscribe(self.ws, self.broadcast.path)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        broadcast = self.broadcast
        stream = broadcast.path == "stream"
        latencies = broadcast.latencies
        target = broadcast.count - 1
        with contextlib.suppress(Exception):
            async for text in self.ws:
                now = time.monotonic()
                frame = json.loads(text)
                data = frame["data"] if stream else frame
                latencies.append(now - data["t"])
                if not broadcast.frame_bytes:
                    broadcast.frame_bytes = len(text)
                self.received += 1
                self.last = data["n"]
                if self.last == target:
                    broadcast.reader_done()


class SlowClient:
    """A client that stops reading once subscribed, and reads again at the end."""

    def __init__(self, broadcast: Broadcast) -> None:
        self.broadcast = broadcast
        self.outcome = SlowOutcome()
        self.ws: Any = None
        self.port = 0

    async def open(self, url: str, server_port: int, rcvbuf: int, mss: int) -> None:
        """Connect with a ``rcvbuf``-byte receive buffer and an MSS of ``mss``.

        ``mss`` 0 leaves the MSS to the kernel (64 KiB on loopback).
        """
        sock = socket.socket()
        sock.setblocking(False)
        # Both before connect(): the window and the MSS are in the SYN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if mss:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        try:
            await asyncio.get_running_loop().sock_connect(
                sock, ("127.0.0.1", server_port)
            )
            self.port = sock.getsockname()[1]
            self.ws = await _connect(url, sock)
        except BaseException:
            sock.close()
            raise
        await _subscribe(self.ws, self.broadcast.path)
        self.ws.transport.pause_reading()

    def note_kernel(self, server_port: int) -> None:
        """Keep the bytes the kernel holds for this connection, and its state."""
        sockets = tcp_sockets()
        state, sent, _ = sockets.get((server_port, self.port), ("gone", 0, 0))
        _, _, received = sockets.get((self.port, server_port), ("gone", 0, 0))
        self.outcome.kernel_bytes = sent + received
        self.outcome.connection = state

    async def drain(self, seconds: float, quiet: float) -> None:
        """Read again until caught up, closed, quiet, or ``seconds`` have passed."""
        from websockets.exceptions import ConnectionClosed

        outcome = self.outcome
        stream = self.broadcast.path == "stream"
        target = self.broadcast.count - 1
        last = -1
        signalled = False
        # Characters received before the first sign of loss: what the
        # server (or the kernel) held for this client.
        whole = 0
        self.ws.transport.resume_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            while not outcome.caught_up:
                async with asyncio.timeout(min(quiet, deadline - loop.time())):
                    text = await self.ws.recv()
                outcome.after_frames += 1
                outcome.after_bytes += len(text)
                frame = json.loads(text)
                if stream and frame.get("kind") == "lost":
                    outcome.lost_frames += 1
                    signalled = True
                    whole = whole or outcome.after_bytes - len(text)
                    # Told it lost everything up to the newest: it is there.
                    outcome.caught_up = frame["offset"] >= self.broadcast.final
                    continue
                n = (frame["data"] if stream else frame)["n"]
                if n <= last:
                    outcome.duplicates += 1
                    continue
                if n > last + 1 and not signalled:
                    # Subscribed at n = 0 (the stream and group are the run's
                    # own), so a first frame past 0 is a gap too.
                    outcome.gaps += 1
                    outcome.skipped += n - last - 1
                    whole = whole or outcome.after_bytes - len(text)
                last, signalled = n, False
                outcome.caught_up = n == target
        except TimeoutError:
            pass
        except ConnectionClosed as closed:
            received = closed.rcvd
            outcome.close_code = received.code if received is not None else 1006
        whole = whole or outcome.after_bytes
        outcome.held_bytes = max(0, whole - outcome.kernel_bytes)


class Broadcast:
    """The state of one run shared by its clients."""

    def __init__(self, path: str, count: int, readers: int) -> None:
        self.path = path
        self.count = count
        self.latencies: list[float] = []
        self.frame_bytes = 0
        # The stream offset of the last publication (streams only).
        self.final = -1
        self._readers = readers
        self._done = 0
        self.all_done = asyncio.Event()

    def reader_done(self) -> None:
        self._done += 1
        if self._done == self._readers:
            self.all_done.set()


def abort(ws: Any) -> None:
    if ws is not None:
        with contextlib.suppress(Exception):
            ws.transport.abort()
