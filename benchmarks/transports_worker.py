"""A load worker for the transports group: stream subscribers on raw sockets.

One process, blocking set-up, then non-blocking sockets under one
``epoll``, no event loop, as :mod:`benchmarks.worker`. Started by
:mod:`benchmarks.workers`::

    python -m benchmarks.transports_worker TRANSPORT URL COUNT CONFIG

``TRANSPORT`` is ``websocket``, ``sse`` or ``poll``; ``URL`` is the
server's ``http://host:port``; ``CONFIG`` is JSON: ``ws_path``,
``http_prefix``, ``stream``, and for the HTTP transports the ``client``
id, the ``positions`` and the CSRF ``cookie`` the driver got by
subscribing once (a client id without a session may be shared: each
subscriber resumes from it).

- ``websocket``: each connection subscribes to the stream; ready once
  answered.
- ``sse``: each connection opens ``<prefix>events``; ready once the
  ``client`` event arrived.
- ``poll``: each connection polls ``<prefix>poll`` (HTTP/1.1 keep-alive),
  and polls again as soon as an answer is read, with the answer's client
  id and the position of its last publication.

Then the same commands and answers as ``members`` of
:mod:`benchmarks.worker`: each publication's data starts with ``<phase
letter><seq:7> <monotonic_ns:20> ``; ``{"expect": [phase, n]}``,
``{"flush": phase}``, ``{"quit": true}``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from typing import Any
from urllib.parse import quote, urlsplit

from benchmarks.measures import failure_name
from benchmarks.worker import Clients, answer, open_connection
from example_project.c10k.client.wire import TEXT, frame

TIMEOUT = 30.0
POLL_SECONDS = 25
# A stamp inside a publication's JSON: the data string's first characters.
STAMP = re.compile(rb'"([a-z])\d{7} (\d{20}) ')
# Longer than any stamp: what may be left of one cut by a read.
TAIL = 40


def _read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError(f"Expected {marker!r}, got the connection closed.")
        data += chunk
    return data


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def _dechunk(body: bytes) -> bytes | None:
    """Return the chunked ``body`` decoded, or ``None`` while incomplete."""
    out, pos = bytearray(), 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return None
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        if len(body) < end + 2 + size + 2:
            return None
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def _response(buffer: bytes) -> tuple[int, bytes, int] | None:
    """Return ``(status, body, length used)`` of the first whole response."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buffer[:head_end].lower()
    start = head_end + 4
    match = re.search(rb"\r\ncontent-length: *(\d+)", head)
    if match is not None:
        stop = start + int(match.group(1))
        if len(buffer) < stop:
            return None
        return _status(head), buffer[start:stop], stop
    if b"transfer-encoding: chunked" not in head:
        raise ValueError(f"Expected a length or chunks, got {head[:300]!r}.")
    end = buffer.find(b"\r\n0\r\n\r\n", start - 2)
    if end < 0:
        return None
    body = _dechunk(buffer[start : end + 7])
    if body is None:
        return None
    return _status(head), body, end + 7


class Subscribers(Clients):
    """The subscribers of one worker process and what they received."""

    def __init__(self, transport: str, url: str, count: int, config: Any) -> None:
        super().__init__()
        parts = urlsplit(url)
        self.transport = transport
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.host = parts.netloc
        self.config = config
        self.stream: str = config["stream"]
        self.clients: dict[int, str] = {}
        self.positions: dict[int, Any] = {}
        opened = self.open_all(count, self._open)
        for sock in opened:
            sock.setblocking(False)
        self.watch(opened)
        if transport == "poll":
            for sock in opened:
                fd = sock.fileno()
                self.clients[fd] = config["client"]
                self.positions[fd] = config["positions"][self.stream]
                self._poll(fd)

    # -- opening ---------------------------------------------------------------

    def _open(self) -> socket.socket:
        if self.transport == "websocket":
            sock = open_connection(f"ws://{self.host}{self.config['ws_path']}")
            sock.setblocking(True)
            sock.settimeout(TIMEOUT)
            text = json.dumps({"kind": "subscribe", "id": 1, "stream": self.stream})
            sock.sendall(frame(TEXT, text.encode(), os.urandom(4)))
            _read_until(sock, b'"subscribed"')
            return sock
        sock = socket.create_connection(self.address, timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.transport == "sse":
            try:
                sock.sendall(self._get("events", self.config["client"], None))
                data = _read_until(sock, b"\r\n\r\n")
                if _status(data) != 200:
                    raise ValueError(f"HTTP {_status(data)}")
                _read_until(sock, b"event: client", data)
            except BaseException:
                sock.close()
                raise
        return sock

    def _get(self, view: str, client: str, position: Any) -> bytes:
        positions = json.dumps({self.stream: position}, separators=(",", ":"))
        target = (
            f"{self.config['http_prefix']}{view}?client={quote(client)}"
            f"&positions={quote(positions)}"
        )
        if view == "poll":
            target += f"&timeout={POLL_SECONDS}"
        # The CSRF cookie, as a browser sends it (else each answer makes one).
        cookie = f"Cookie: csrftoken={self.config['cookie']}\r\n"
        return f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n{cookie}\r\n".encode()

    def _poll(self, fd: int) -> None:
        request = self._get("poll", self.clients[fd], self.positions[fd])
        try:
            self.sockets[fd].send(request)
        except OSError as error:
            self.drop(fd, failure_name(error))

    # -- receiving -------------------------------------------------------------

    def stamps(self, fd: int, data: bytes) -> list[tuple[str, int]]:
        """Return the stamps that arrived on ``fd`` (phase, publish ns)."""
        if self.transport == "poll":
            return self._poll_answers(fd, data)
        buffer = self.buffers[fd] + data if self.buffers[fd] else data
        found, end = [], 0
        for match in STAMP.finditer(buffer):
            found.append((chr(match[1][0]), int(match[2])))
            end = match.end()
        self.buffers[fd] = buffer[max(end, len(buffer) - TAIL) :]
        return found

    def _poll_answers(self, fd: int, data: bytes) -> list[tuple[str, int]]:
        buffer = self.buffers[fd] + data
        found: list[tuple[str, int]] = []
        while (whole := _response(buffer)) is not None:
            status, body, used = whole
            buffer = buffer[used:]
            if status != 200:
                self.drop(fd, f"HTTP {status}")
                return found
            answer = json.loads(body)
            self.clients[fd] = answer["client"]
            for item in answer["frames"]:
                if item.get("kind") == "publication":
                    text = item["data"]
                    found.append((text[0], int(text[9:29])))
                    self.positions[fd] = [item["epoch"], item["offset"]]
                else:
                    self.errors[f"frame {item.get('kind')}"] += 1
            self._poll(fd)
        self.buffers[fd] = buffer
        return found

    def members(self) -> None:
        """Answer ``expect``/``flush`` commands until ``quit``."""
        expected: dict[str, int] = {}
        latencies: dict[str, list[int]] = {}
        last: dict[str, int] = {}
        cpu_at: dict[str, float] = {}
        reported: set[str] = set()

        def report(phase: str) -> None:
            reported.add(phase)
            answer(
                {
                    "phase": phase,
                    "delivered": len(latencies.get(phase, [])),
                    "last_ns": last.get(phase),
                    "latencies": latencies.get(phase, []),
                    "cpu": time.process_time() - cpu_at.get(phase, 0.0),
                    "errors": dict(self.errors),
                }
            )

        scratch, sockets = self.scratch, self.sockets
        clock, poll, stdin = time.monotonic_ns, self.poller.poll, self.stdin
        while True:
            events = poll()
            if len(events) > 64:
                time.sleep(0.001)  # busy: more per read, fewer reads
            for fd, _ in events:
                if fd == stdin:
                    for command in self.read_commands():
                        if "quit" in command:
                            return
                        if "expect" in command:
                            phase, per_member = command["expect"]
                            expected[phase] = per_member * len(sockets)
                            cpu_at[phase] = time.process_time()
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
                if not size:
                    self.drop(fd, "closed by the server")
                    continue
                now = clock()
                for phase, stamp in self.stamps(fd, bytes(scratch[:size])):
                    got = latencies.setdefault(phase, [])
                    got.append(now - stamp)
                    last[phase] = now
                    full = len(got) >= expected.get(phase, -1) >= 0
                    if full and phase not in reported:
                        report(phase)


def main(argv: list[str]) -> None:
    """Run one worker: ``TRANSPORT URL COUNT CONFIG`` (see the docstring)."""
    transport, url, count, config = argv[0], argv[1], int(argv[2]), argv[3]
    subscribers = Subscribers(transport, url, count, json.loads(config))
    answer({"ready": len(subscribers.sockets), "failures": dict(subscribers.failures)})
    try:
        subscribers.members()
    finally:
        subscribers.close()


if __name__ == "__main__":
    main(sys.argv[1:])
