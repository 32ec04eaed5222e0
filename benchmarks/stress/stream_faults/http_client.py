"""Stream-faults clients over the HTTP transports: server-sent events and long-polling.

They drop, come back and check what arrives as the WebSocket clients do
(:class:`~benchmarks.stress.stream_faults.client.Client`), speaking the
protocol's "HTTP transports" (``docs/reference/streams-protocol.rst``) on
raw asyncio streams: a first poll for a client id and the CSRF token, a
``POST`` subscribe per stream (with ``since`` once it has a position),
then a ``GET`` of the event stream, or polls one after the other on one
keep-alive connection, each carrying the positions to resume from. A drop
resets (or closes) that connection; the client comes back to a random
server with its client id and positions, and starts again from a first
poll when the server no longer takes the id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import quote

from benchmarks.stress.stream_faults.client import Client
from benchmarks.stress.stream_faults.state import (
    HTTP_PREFIX,
    Run,
    SlotStats,
    reset,
)
from django_realtime.streams.positions import Position

# Refusals after which the client starts again without a client id.
_START_AGAIN = {"client_unknown", "client_expired", "client_mismatch"}
_POLL_SECONDS = 5


class Refused(Exception):
    """The server refused a request (status and error code)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.status = status
        self.code = code


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], str]:
    """Return the status, headers and ``csrftoken`` cookie of a response."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    cookie = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie" and value.startswith("csrftoken="):
            cookie = value.split(";", 1)[0].split("=", 1)[1]
        headers[name] = value
    return int(lines[0].split(" ", 2)[1]), headers, cookie


async def _chunk(reader: asyncio.StreamReader) -> bytes:
    """Return the next chunk of a chunked body (empty at its end)."""
    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
    data = await reader.readexactly(size + 2)
    return data[:-2]


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding") == "chunked":
        parts = []
        while chunk := await _chunk(reader):
            parts.append(chunk)
        return b"".join(parts)
    return await reader.read()


def _refused(status: int, body: bytes) -> Refused:
    try:
        code = str(json.loads(body).get("error"))
    except ValueError:
        code = "?"
    return Refused(status, code)


class HttpClient(Client):
    """A client over ``sse`` or ``poll``; see the module's docstring."""

    def __init__(self, index: int, run: Run, seed: int | None, transport: str):
        super().__init__(index, run, seed)
        self.transport = transport
        self.client_id: str | None = None
        self.csrf = ""
        self.cookie = ""
        self.listed: set[str] = set()
        self.reader: asyncio.StreamReader | None = None
        self.port = 0
        self.catching = False
        self.targets: dict[str, Position] | None = None
        self.started = 0.0

    async def _open(self, url: str) -> Any:
        self.port = int(url.split(":")[2].split("/")[0])
        self.reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return writer

    async def _request(self, target: str, body: bytes | None = None) -> Any:
        """Make one request on a connection of its own; return its JSON."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            head = f"Host: 127.0.0.1:{self.port}\r\nConnection: close\r\n"
            if body is None:
                writer.write(f"GET {target} HTTP/1.1\r\n{head}\r\n".encode())
            else:
                head += (
                    f"Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    f"X-Realtime-Client: {self.client_id}\r\n"
                    f"X-CSRFToken: {self.csrf}\r\nCookie: csrftoken={self.cookie}\r\n"
                )
                writer.write(f"POST {target} HTTP/1.1\r\n{head}\r\n".encode() + body)
            status, headers, cookie = await _head(reader)
            data = await _body(reader, headers)
        finally:
            writer.close()
        if status != 200:
            raise _refused(status, data)
        self.cookie = cookie or self.cookie
        return json.loads(data)

    async def _subscribe_all(self, stats: SlotStats) -> None:
        """Get a client id if there is none; subscribe to what it lacks."""
        if self.client_id is None:
            answer = await self._request(f"{HTTP_PREFIX}poll")
            self.client_id, self.csrf = answer["client"], answer["csrf"]
            self.listed = set()
        for track in self.tracks.values():
            if track.stream in self.listed:
                continue
            since = track.position
            frame: dict[str, Any] = {"kind": "subscribe", "id": 1}
            frame["stream"] = track.stream
            if since is not None:
                frame["since"] = {"epoch": since.epoch, "offset": since.offset}
            answer = await self._request(HTTP_PREFIX, json.dumps(frame).encode())
            self.client_id = answer["client"]
            for item in answer["frames"]:
                if item["kind"] == "subscribed":
                    outcome = track.subscribed(item, since)
                    if outcome != "first":
                        stats.resumes[outcome] += 1
                    self.listed.add(track.stream)
                else:
                    self._frame(item)
        self.subscribed.set()

    def _frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("kind")
        if kind == "publication":
            self.tracks[frame["stream"]].publication(
                frame["epoch"], frame["offset"], frame["data"]["n"]
            )
        elif kind == "lost":
            self.tracks[frame["stream"]].lost(frame)
        elif kind == "error" and frame.get("code") == "forbidden":
            self.listed.discard(frame["stream"])
        else:
            track = next(iter(self.tracks.values()))
            track.errors.append(f"unexpected frame {json.dumps(frame)[:200]}")

    def _target(self, view: str) -> str:
        positions = {
            stream: None
            if track.position is None
            else [track.position.epoch, track.position.offset]
            for stream, track in self.tracks.items()
        }
        target = (
            f"{HTTP_PREFIX}{view}?client={quote(str(self.client_id))}"
            f"&positions={quote(json.dumps(positions))}"
        )
        return target + (f"&timeout={_POLL_SECONDS}" if view == "poll" else "")

    async def _follow(
        self,
        stats: SlotStats,
        started: float,
        targets: dict[str, Position] | None,
        deadline: float,
    ) -> str:
        """Follow the streams over one HTTP connection; return how it ended."""
        loop = asyncio.get_running_loop()
        self.pending = {}
        try:
            await self._subscribe_all(stats)
        except Refused as refused:
            return self._refusal(refused)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return "server_closed_1006"
        self.catching = targets is not None
        self.targets, self.started = targets, started
        reader, writer = self.reader, self.ws
        assert reader is not None
        follow = asyncio.ensure_future(self._read(reader, writer, stats))
        try:
            while True:
                keep = self.run.stopping.is_set() or self.stalled
                left = None if keep else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait({follow}, timeout=left)
                if done:
                    break
                if self.run.stopping.is_set() or self.stalled:
                    # Draining, or stalled: wait, as a real client would.
                    continue
                if self.catching:
                    stats.interrupted += 1
                if self.rng.random() < self.run.options.clean_close:
                    writer.close()
                    return "clean"
                reset(writer)
                return "reset"
        finally:
            follow.cancel()
        try:
            return follow.result()
        except Refused as refused:
            return self._refusal(refused)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            if self.catching:
                stats.interrupted += 1
            return "server_closed_1006"

    async def _read(
        self, reader: asyncio.StreamReader, writer: Any, stats: SlotStats
    ) -> str:
        if self.transport == "sse":
            return await self._events(reader, writer, stats)
        while True:
            await self._poll(reader, writer, stats)

    def _refusal(self, refused: Refused) -> str:
        if refused.code in _START_AGAIN:
            self.client_id = None
        return f"server_closed_{refused.status}"

    def _arrived(self, frames: list[dict[str, Any]], stats: SlotStats) -> None:
        loop = asyncio.get_running_loop()
        self.last_frame = loop.time()
        if self.silent_from is not None:
            stats.stall_seconds.append(self.last_frame - self.silent_from)
            self.silent_from = None
        for frame in frames:
            self._frame(frame)
        targets = self.targets
        if self.catching and targets is not None and self._reached(targets):
            self.catching = False
            stats.catch_ups.append(loop.time() - self.started)
        self.check_drained()

    async def _events(
        self, reader: asyncio.StreamReader, writer: Any, stats: SlotStats
    ) -> str:
        writer.write(
            f"GET {self._target('events')} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n\r\n".encode()
        )
        status, headers, _ = await _head(reader)
        if status != 200:
            raise _refused(status, await _body(reader, headers))
        text = ""
        while chunk := await _chunk(reader):
            text += chunk.decode()
            *events, text = text.split("\n\n")
            frames = []
            for event in events:
                name, data = "", ""
                for line in event.split("\n"):
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                if name == "client":
                    self.client_id = json.loads(data)["client"]
                elif name == "close":
                    self._arrived(frames, stats)
                    return f"server_closed_{json.loads(data)['code']}"
                elif data:
                    frames.append(json.loads(data))
            self._arrived(frames, stats)
        return "server_closed_1000"

    async def _poll(
        self, reader: asyncio.StreamReader, writer: Any, stats: SlotStats
    ) -> None:
        writer.write(
            f"GET {self._target('poll')} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n\r\n".encode()
        )
        status, headers, _ = await _head(reader)
        body = await _body(reader, headers)
        if status != 200:
            raise _refused(status, body)
        answer = json.loads(body)
        self.client_id = answer["client"]
        self._arrived(answer["frames"], stats)

    async def close(self) -> None:
        """End the current connection, if any."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                reset(self.ws)
