"""Test an application's streams, and what its clients do when things break.

:class:`StreamClient` speaks the stream protocol to your ASGI application
in-process, as the browser client does: it keeps the position of every
stream, and after :meth:`~StreamClient.drop` and
:meth:`~StreamClient.reconnect` resumes each one. :func:`flush_streams`
makes the store lose its history mid-test, and :func:`drop_redis_connections`
cuts the connections a server holds to Redis, so a test can check that
nothing is lost or duplicated, and that losses are reported.
"""

# A timeout argument per call, as WebsocketCommunicator has, reads better in
# tests than wrapping every call in asyncio.timeout().
# ruff: noqa: ASYNC109

from __future__ import annotations

import itertools
from typing import Any

from django_realtime.exceptions import RealtimeError
from django_realtime.streams.positions import Position
from django_realtime.streams.registry import get_stream_store
from django_realtime.testing.communicators import HeaderPairs, WebsocketCommunicator

__all__ = [
    "RequestFailed",
    "StreamClient",
    "drop_redis_connections",
    "flush_streams",
]


class RequestFailed(RealtimeError):
    """The server answered a frame with an ``error`` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.code = frame.get("code")
        self.frame = frame


class StreamClient:
    """A stream protocol client over a :class:`WebsocketCommunicator`.

    Args:
        application: The ASGI application (your router, or a consumer's
            ``as_asgi()``).
        path: The WebSocket path.
        headers: Handshake headers (a session cookie, say).

    Attributes:
        received: Each stream's publication payloads, in arrival order,
            across reconnects.
        positions: Each stream's last position.
        losses: The ``lost`` frames, and the ``subscribed`` frames of resumes
            that could not be recovered.
        sessions: The ``session`` frames (a login rotated the session key:
            the token a browser exchanges for the new cookie), in order.
    """

    def __init__(
        self, application: Any, path: str, headers: HeaderPairs | None = None
    ) -> None:
        self.application = application
        self.path = path
        self.headers = headers
        self.received: dict[str, list[Any]] = {}
        self.positions: dict[str, Position] = {}
        self.losses: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._ws: WebsocketCommunicator | None = None

    @property
    def communicator(self) -> WebsocketCommunicator:
        """Return the current connection's communicator."""
        if self._ws is None:
            raise RealtimeError("The StreamClient is not connected: call connect().")
        return self._ws

    async def connect(self, timeout: float = 1) -> None:
        """Open a connection.

        Raises:
            RequestFailed: the handshake was refused (``code`` is the close code).
        """
        ws = WebsocketCommunicator(self.application, self.path, self.headers)
        accepted, detail = await ws.connect(timeout)
        if not accepted:
            raise RequestFailed({"code": detail, "message": "connection refused"})
        self._ws = ws

    async def subscribe(
        self, stream: str, since: Position | None = None, timeout: float = 1
    ) -> dict[str, Any]:
        """Subscribe to ``stream`` (from ``since``); return the ``subscribed`` frame.

        Raises:
            RequestFailed: the subscription was refused.
        """
        fields: dict[str, Any] = {"stream": stream}
        if since is not None:
            fields["since"] = {"epoch": since.epoch, "offset": since.offset}
        frame = await self._call("subscribe", fields, timeout)
        self.received.setdefault(stream, [])
        self.positions[stream] = Position(
            frame["epoch"], frame["offset"] - frame["replayed"]
        )
        if since is not None and not frame["recovered"]:
            self.losses.append(frame)
            self.positions[stream] = Position(frame["epoch"], frame["offset"])
        return frame

    async def unsubscribe(self, stream: str, timeout: float = 1) -> None:
        """Unsubscribe from ``stream``."""
        await self._call("unsubscribe", {"stream": stream}, timeout)
        self.positions.pop(stream, None)

    async def request(
        self, request_type: str, data: Any = None, timeout: float = 1
    ) -> Any:
        """Send a request; return the reply's data.

        Raises:
            RequestFailed: the server answered with an error.
        """
        frame = await self._call(
            "request", {"type": request_type, "data": data}, timeout
        )
        return frame.get("data")

    async def wait_for(self, stream: str, count: int, timeout: float = 1) -> list[Any]:
        """Read frames until ``stream`` has ``count`` payloads; return them all."""
        while len(self.received.get(stream, ())) < count:
            self._take(await self.communicator.receive_json_from(timeout))
        return self.received[stream]

    async def drop(self) -> None:
        """Drop the connection abruptly (close code 1006), as a network would."""
        await self.communicator.disconnect(code=1006)
        self._ws = None

    async def close(self) -> None:
        """Close the connection normally."""
        if self._ws is not None:
            await self._ws.disconnect()
            self._ws = None

    async def reconnect(self, timeout: float = 1) -> list[dict[str, Any]]:
        """Connect again and resume every stream; return the ``subscribed`` frames."""
        if self._ws is not None:
            await self.drop()
        await self.connect(timeout)
        streams = dict(self.positions)
        return [
            await self.subscribe(stream, since, timeout)
            for stream, since in streams.items()
        ]

    async def _call(
        self, kind: str, fields: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        frame_id = next(self._ids)
        await self.communicator.send_json_to({"kind": kind, "id": frame_id, **fields})
        while True:
            frame = await self.communicator.receive_json_from(timeout)
            if frame.get("id") == frame_id and frame.get("kind") != "publication":
                if frame["kind"] == "error":
                    raise RequestFailed(frame)
                return frame  # type: ignore[no-any-return]
            self._take(frame)

    def _take(self, frame: dict[str, Any]) -> None:
        kind = frame.get("kind")
        if kind == "publication":
            stream = frame["stream"]
            last = self.positions.get(stream)
            # A filtered subscription says how many it was not sent before this.
            expected = (
                None if last is None else last.offset + 1 + frame.get("withheld", 0)
            )
            if last is not None and (
                last.epoch != frame["epoch"] or frame["offset"] != expected
            ):
                raise AssertionError(
                    f"Expected offset {expected} of {stream!r} in epoch "
                    f"{last.epoch!r}, got {frame['offset']} in {frame['epoch']!r}."
                )
            self.received.setdefault(stream, []).append(frame["data"])
            self.positions[stream] = Position(frame["epoch"], frame["offset"])
        elif kind == "lost":
            self.losses.append(frame)
            self.positions[frame["stream"]] = Position(frame["epoch"], frame["offset"])
        elif kind == "session":
            self.sessions.append(frame)
        else:
            raise AssertionError(f"Unexpected frame {frame!r}.")


async def flush_streams() -> None:
    """Make the history store forget every stream (each starts a new epoch)."""
    await get_stream_store().flush()


async def drop_redis_connections(
    url: str = "redis://127.0.0.1:6379", *, name_prefix: str | None = None
) -> int:
    """Close other clients' connections to Redis; return how many.

    Args:
        url: The Redis server.
        name_prefix: Only connections whose ``CLIENT SETNAME`` starts with
            this (default: every connection but this call's own).
    """
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        own = await client.client_id()
        killed = 0
        for info in await client.client_list():
            if int(info["id"]) == own:
                continue
            if name_prefix is not None and not info.get("name", "").startswith(
                name_prefix
            ):
                continue
            killed += int(await client.client_kill_filter(_id=info["id"]))
        return killed
    finally:
        await client.aclose()
