"""The presence benchmark's load client: many members on raw sockets, one loop.

One process plays a thousand browsers, so what it spends per frame must be
far below what a server spends, or the client is what gets measured. Each
:class:`Member` is an ``asyncio.Protocol`` on a plain socket: it writes the
opening handshake, splits the server's frames with the c10k client's
:func:`~example_project.c10k.client.wire.split_frames`, answers pings, and
hands each text frame to its :class:`View`. Client frames are masked with
one key chosen per process (servers unmask whatever the key). Every member
on a server process gets the same diff and snapshot texts: each distinct
text is decoded once (:func:`decode`), and every view applies it to its own
members.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Any

from example_project.c10k.client.wire import (
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    accept_problem,
    frame,
    parse_head,
    request,
    split_frames,
)

__all__ = ["Member", "View", "decode"]

_KEY = os.urandom(4)


def decode(text: str, _seen: dict[str, Any] = {}) -> Any:  # noqa: B006
    """Return the JSON value of ``text``, decoding each distinct text once.

    The values are shared between views and never changed.
    """
    value = _seen.get(text)
    if value is None:
        if len(_seen) > 256:
            _seen.clear()
        value = _seen[text] = json.loads(text)
    return value


class View:
    """A member's view of the stream's members, kept as realtime.js keeps it.

    The snapshot (the ``presence.members`` reply), then versioned diffs;
    diffs that arrive before the snapshot wait for it.
    """

    def __init__(self, stream: str, expected: int) -> None:
        self.stream = stream
        self.expected = expected
        self.version: int | None = None
        self.members: set[str] = set()
        self.versions: dict[str, int] = {}
        self.pending: list[dict[str, Any]] = []
        self.diffs = 0
        self.converged: float | None = None

    def opening(self) -> str:
        """Return the first frame to send: the subscribe to the presence."""
        return json.dumps(
            {"kind": "subscribe", "id": 1, "stream": f"presence:{self.stream}"}
        )

    def handle(self, frame: dict[str, Any]) -> str | None:
        """Take one server frame; return a frame to send, if any."""
        kind = frame.get("kind")
        answer = None
        if kind == "subscribed":
            answer = json.dumps(
                {
                    "kind": "request",
                    "id": 2,
                    "type": "presence.members",
                    "data": {"stream": self.stream},
                }
            )
        elif kind == "reply":
            data = frame["data"]
            self.version = data["version"]
            self.members = set(data["members"])
            self.versions = {k: r["v"] for k, r in data["members"].items()}
            for diff in self.pending:
                self.apply(diff)
        elif kind == "publication":
            self.diffs += 1
            if self.version is None:
                self.pending.append(frame["data"])
            else:
                self.apply(frame["data"])
        elif kind == "error":
            raise RuntimeError(f"The server refused a frame: {frame}")
        if (
            self.converged is None
            and self.version is not None
            and len(self.members) == self.expected
        ):
            self.converged = time.monotonic()
        return answer

    def apply(self, data: dict[str, Any]) -> None:
        """Apply one diff: a change counts only if newer than what is known."""
        assert self.version is not None
        floor = self.version
        versions, members = self.versions, self.members
        for key, record in data["joins"].items():
            if record["v"] > max(floor, versions.get(key, 0)):
                members.add(key)
                versions[key] = record["v"]
        for key, version in data["leaves"].items():
            if version > max(floor, versions.get(key, 0)):
                members.discard(key)
                versions[key] = version


class Member(asyncio.Protocol):
    """One WebSocket connection of one member, feeding its :class:`View`."""

    def __init__(self, path: str, netloc: str, view: View) -> None:
        self.view = view
        self.key = base64.b64encode(os.urandom(16))
        self.request = request(path, netloc, self.key)
        self.buffer = bytearray()
        self.parts: list[bytes] = []
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.problem: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionError(f"Closed before the handshake ended: {exc!r}")
            )
        elif self.problem is None and self.view.converged is None:
            self.problem = f"Closed before converging ({exc!r})."

    def send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(frame(TEXT, text.encode(), _KEY))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded and not self._upgrade():
            return
        frames, rest, problem = split_frames(self.buffer)
        buffer = self.buffer
        try:
            for fin, opcode, start, stop in frames:
                if opcode in (TEXT, CONTINUATION):
                    self.parts.append(bytes(buffer[start:stop]))
                    if fin:
                        text = b"".join(self.parts).decode()
                        self.parts.clear()
                        answer = self.view.handle(decode(text))
                        if answer is not None:
                            self.send(answer)
                elif opcode == PING:
                    assert self.transport is not None
                    self.transport.write(frame(PONG, bytes(buffer[start:stop]), _KEY))
                elif opcode == CLOSE:
                    self.problem = (
                        f"Closed by the server: {bytes(buffer[start:stop])!r}"
                    )
        except Exception as exc:
            self.problem = repr(exc)
            assert self.transport is not None
            self.transport.close()
        del buffer[:rest]
        if problem is not None:
            self.problem = problem

    def _upgrade(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        parsed = parse_head(bytes(self.buffer[:end]))
        del self.buffer[: end + 4]
        if isinstance(parsed, str) or parsed[0] != 101:
            failure = ConnectionError(f"Expected a 101 answer, got {parsed!r}.")
        else:
            problem = accept_problem(parsed[1], self.key)
            failure = None if problem is None else ConnectionError(problem)
        if failure is not None:
            self.opened.set_exception(failure)
            assert self.transport is not None
            self.transport.close()
            return False
        self.upgraded = True
        self.opened.set_result(None)
        self.send(self.view.opening())
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
