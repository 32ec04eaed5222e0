"""A load worker: one process driving many WebSocket connections on raw sockets.

The suite's load client, for the measurements where the client must cost
far less than the server: blocking handshakes, then non-blocking sockets
under one ``epoll``, frames built once (a client frame's mask is chosen
once per worker; servers unmask whatever the key), no event loop, no
object per message. Started by :mod:`benchmarks.workers`::

    python -m benchmarks.worker echo URL COUNT SIZE
    python -m benchmarks.worker members URL COUNT SIZE

It opens ``COUNT`` connections to ``URL``, then talks JSON lines: commands
on stdin, answers on stdout, its first answer ``{"ready": opened,
"failures": {...}}``.

``echo``
    ``{"go": [from_ns, to_ns]}``: each connection sends a ``SIZE``-byte text
    message and sends it again as soon as the echo is back, until
    ``to_ns``; the answer counts the echoes that arrived from ``from_ns``
    to ``to_ns`` (``time.monotonic_ns()``, one clock for every process on
    Linux) and the worker's CPU seconds over that window.
``members``
    The connections are members of a group; each message they receive is
    ``<phase letter><seq:7> <monotonic_ns:20> ``, padded. ``{"expect":
    [phase, n]}`` announces ``n`` messages of ``phase`` per member; the
    worker answers once every member has them, or at ``{"flush": phase}``,
    with the count, the last arrival, the latencies (arrival less stamp,
    in ns) and the CPU seconds since the ``expect``.

``{"quit": true}`` ends the worker. Pings are answered; a close or an
error on a connection is counted in the answer's ``errors``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from benchmarks.measures import failure_name
from example_project.c10k.client.wire import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    accept_problem,
    frame,
    parse_head,
    request,
    split_frames,
)

HANDSHAKE_TIMEOUT = 30.0


def answer(message: dict[str, Any]) -> None:
    """Write ``message`` as one JSON line on stdout."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def open_connection(url: str) -> socket.socket:
    """Return a socket whose opening handshake with ``url`` succeeded.

    Raises:
        OSError: The connection failed or timed out.
        ValueError: The server did not accept the upgrade; says why.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    key = base64.b64encode(os.urandom(16))
    sock = socket.create_connection((host, port), timeout=HANDSHAKE_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request(parts.path or "/", parts.netloc, key))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ValueError("Expected an HTTP answer, got the connection closed.")
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        parsed = parse_head(head)
        if isinstance(parsed, str):
            raise ValueError(parsed)
        status, headers = parsed
        if status != 101:
            raise ValueError(f"HTTP {status}")
        problem = accept_problem(headers, key)
        if problem is not None:
            raise ValueError(problem)
        if rest:
            raise ValueError(f"Expected nothing after the 101, got {rest[:40]!r}.")
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Clients:
    """Sockets under one ``epoll`` with stdin for commands: a worker's base.

    Subclasses open their connections with :meth:`open_all` and
    :meth:`watch` them, then read commands and count drops.
    """

    def __init__(self) -> None:
        # Every read lands here first: no buffer allocated per read.
        self.scratch = bytearray(262_144)
        self.sockets: dict[int, socket.socket] = {}
        self.buffers: dict[int, bytes] = {}
        self.failures: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.poller = select.epoll()
        self.commands = b""
        self.stdin = sys.stdin.fileno()

    def open_all(
        self, count: int, open_one: Callable[[], socket.socket]
    ) -> list[socket.socket]:
        """Open up to ``count`` sockets; count failures (give up at 100)."""
        opened = []
        for _ in range(count):
            try:
                opened.append(open_one())
            except (OSError, ValueError) as error:
                name = str(error)[:80] if isinstance(error, ValueError) else None
                self.failures[name or failure_name(error)] += 1
                if sum(self.failures.values()) >= 100:
                    break
        return opened

    def watch(self, opened: list[socket.socket]) -> None:
        """Register ``opened`` and stdin for reading."""
        for sock in opened:
            self.sockets[sock.fileno()] = sock
            self.buffers[sock.fileno()] = b""
            self.poller.register(sock.fileno(), select.EPOLLIN)
        os.set_blocking(self.stdin, False)
        self.poller.register(self.stdin, select.EPOLLIN)

    def drop(self, fd: int, reason: str) -> None:
        """Count ``reason`` and forget the connection of ``fd``."""
        self.errors[reason] += 1
        sock = self.sockets.pop(fd, None)
        if sock is not None:
            self.poller.unregister(fd)
            sock.close()

    def read_commands(self) -> list[dict[str, Any]]:
        """Return the complete command lines that arrived on stdin."""
        try:
            chunk = os.read(self.stdin, 65536)
        except BlockingIOError:
            return []
        if not chunk:
            return [{"quit": True}]
        self.commands += chunk
        *lines, self.commands = self.commands.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def close(self) -> None:
        """Close every socket."""
        for sock in self.sockets.values():
            sock.close()


class Worker(Clients):
    """The connections of one worker process and what they received."""

    def __init__(self, url: str, count: int, size: int) -> None:
        super().__init__()
        self.payload = b"x" * size
        key = os.urandom(4)
        self.request_frame = frame(TEXT, self.payload, key)
        self.reply = bytes((0x81, size)) + self.payload if size < 126 else b""
        self.key = key
        self.watch(self.open_all(count, lambda: open_connection(url)))

    def frames(self, fd: int, data: bytes | bytearray) -> list[bytes]:
        """Return the text messages that completed on ``fd``; answer pings."""
        sock = self.sockets[fd]
        buffer = self.buffers[fd] + data if self.buffers[fd] else data
        frames, pos, problem = split_frames(buffer)
        messages = []
        for fin, opcode, start, stop in frames:
            if opcode == TEXT and fin:
                messages.append(buffer[start:stop])
            elif opcode == PING:
                sock.send(frame(PONG, buffer[start:stop], self.key))
            elif opcode == CLOSE:
                self.drop(fd, f"close {int.from_bytes(buffer[start : start + 2])}")
                return messages
            else:
                self.drop(fd, f"unexpected opcode {opcode}")
                return messages
        if problem is not None:
            self.drop(fd, problem)
            return messages
        if fd in self.sockets:
            self.buffers[fd] = buffer[pos:]
        return messages

    def echo(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        """Echo until ``end_ns``; count the echoes from ``start_ns``."""
        request_frame, reply = self.request_frame, self.reply
        for sock in self.sockets.values():
            sock.send(request_frame)
        counted = 0
        cpu_start: float | None = None
        clock = time.monotonic_ns
        poll = self.poller.poll
        sockets, stdin = self.sockets, self.stdin
        scratch = self.scratch
        while True:
            now = clock()
            if cpu_start is None and now >= start_ns:
                cpu_start = time.process_time()
            if now >= end_ns:
                break
            wake = start_ns if cpu_start is None else end_ns
            for fd, _ in poll(max(0.0, (wake - now) / 1e9)):
                if fd == stdin:
                    continue
                sock = sockets.get(fd)
                if sock is None:
                    continue
                # The common case: exactly one echo, in one read.
                try:
                    size = sock.recv_into(scratch)
                except OSError as error:
                    self.drop(fd, failure_name(error))
                    continue
                data = scratch[:size]
                if data == reply and not self.buffers[fd]:
                    if cpu_start is not None:
                        counted += 1
                    sock.send(request_frame)
                    continue
                echoes = self._unusual_echo(fd, data)
                if cpu_start is not None:
                    counted += echoes
        cpu = time.process_time() - (cpu_start or time.process_time())
        return {"count": counted, "cpu": cpu, "errors": dict(self.errors)}

    def _unusual_echo(self, fd: int, data: bytes) -> int:
        """Handle a read that was not exactly one echo; return the echoes in it."""
        if not data:
            self.drop(fd, "closed by the server")
            return 0
        buffer = self.buffers[fd] + data
        frames, pos, problem = split_frames(buffer)
        sock = self.sockets[fd]
        echoes = 0
        for fin, opcode, start, stop in frames:
            if opcode == TEXT and fin and buffer[start:stop] == self.payload:
                echoes += 1
                sock.send(self.request_frame)
            elif opcode == PING:
                sock.send(frame(PONG, buffer[start:stop], self.key))
            else:
                self.drop(fd, f"unexpected frame (opcode {opcode})")
                return echoes
        if problem is not None:
            self.drop(fd, problem)
            return echoes
        self.buffers[fd] = buffer[pos:]
        return echoes

    def members(self) -> None:
        """Answer ``expect``/``flush`` commands until ``quit``."""
        expected: dict[str, int] = {}
        latencies: dict[str, list[int]] = {}
        last: dict[str, int] = {}
        cpu_at: dict[str, float] = {}
        system_at: dict[str, float] = {}
        reported: set[str] = set()

        def report(phase: str) -> None:
            reported.add(phase)
            got = latencies.get(phase, [])
            answer(
                {
                    "phase": phase,
                    "delivered": len(got),
                    "last_ns": last.get(phase),
                    "latencies": got,
                    "cpu": time.process_time() - cpu_at.get(phase, 0.0),
                    "system": os.times().system - system_at.get(phase, 0.0),
                    "errors": dict(self.errors),
                }
            )

        def record(phase: str, got: list[int], now: int) -> None:
            last[phase] = now
            if len(got) >= expected.get(phase, -1) >= 0 and phase not in reported:
                report(phase)

        step = len(self.reply)
        heads = b"\x81" * (len(self.scratch) // step + 1)
        sizes = self.reply[1:2] * len(heads)
        scratch, sockets, buffers = self.scratch, self.sockets, self.buffers
        clock, poll, stdin = time.monotonic_ns, self.poller.poll, self.stdin
        while True:
            events = poll()
            if len(events) > 64:
                # Busy: let a little more arrive per read. Adds at most a
                # millisecond to latencies of a burst, saves most reads.
                time.sleep(0.001)
            for fd, _ in events:
                if fd == stdin:
                    for command in self.read_commands():
                        if "quit" in command:
                            return
                        if "expect" in command:
                            phase, per_member = command["expect"]
                            expected[phase] = per_member * len(sockets)
                            cpu_at[phase] = time.process_time()
                            system_at[phase] = os.times().system
                            if len(latencies.get(phase, [])) >= expected[phase]:
                                report(phase)
                        elif "flush" in command and command["flush"] not in reported:
                            report(command["flush"])
                    continue
                sock = sockets.get(fd)
                if sock is None:
                    continue
                try:
                    size = sock.recv_into(scratch)
                except OSError as error:
                    self.drop(fd, failure_name(error))
                    continue
                now = clock()
                count = size // step
                # The common case: whole frames of one phase, nothing pending.
                if (
                    size
                    and size == count * step
                    and not buffers[fd]
                    and scratch[0:size:step] == heads[:count]
                    and scratch[1:size:step] == sizes[:count]
                    and scratch[2:size:step] == scratch[2:3] * count
                ):
                    phase = chr(scratch[2])
                    got = latencies.setdefault(phase, [])
                    got.extend(
                        now - int(scratch[i : i + 20]) for i in range(11, size, step)
                    )
                    record(phase, got, now)
                    continue
                if not size:
                    self.drop(fd, "closed by the server")
                    continue
                for message in self.frames(fd, scratch[:size]):
                    phase = chr(message[0])
                    got = latencies.setdefault(phase, [])
                    got.append(now - int(message[9:29]))
                    record(phase, got, now)


def main(argv: list[str]) -> None:
    """Run one worker: ``MODE URL COUNT SIZE`` (see the module's docstring)."""
    mode, url, count, size = argv[0], argv[1], int(argv[2]), int(argv[3])
    worker = Worker(url, count, size)
    answer({"ready": len(worker.sockets), "failures": dict(worker.failures)})
    try:
        if mode == "echo":
            while True:
                commands = []
                while not commands:
                    worker.poller.poll()
                    commands = worker.read_commands()
                command = commands[0]
                if "quit" in command:
                    return
                start_ns, end_ns = command["go"]
                answer(worker.echo(start_ns, end_ns))
                return
        worker.members()
    finally:
        worker.close()


if __name__ == "__main__":
    main(sys.argv[1:])
