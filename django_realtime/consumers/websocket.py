"""WebSocket consumers, async and sync, plain and JSON.

The protocol logic (groups, handshake, denial, bad frames, disconnect) lives
once, in :class:`_WebsocketHandlers`, as async handlers for the ASGI
``websocket.*`` messages. The user-facing hooks (``connect``, ``receive``,
``disconnect``, ``receive_json``) are async in the ``Async*`` classes and
plain functions in the others; the handlers await the former and run the
latter on the sync pool. The two flavours differ only in how ``accept()``,
``send()`` and ``close()`` are spelled.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, ClassVar

from django_realtime.consumers.base import AsyncConsumer, Message, SyncConsumer
from django_realtime.exceptions import (
    DenyConnection,
    InvalidChannelLayerError,
    InvalidFrameError,
    StopConsumer,
)
from django_realtime.outbox import current_outbox

__all__ = [
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "JsonWebsocketConsumer",
    "WebsocketConsumer",
]

logger = logging.getLogger(__name__)

Headers = Iterable[tuple[bytes, bytes]]

# RFC 6455 close codes used when a frame is refused.
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007


def accept_message(
    subprotocol: str | None = None, headers: Headers | None = None
) -> Message:
    """Build a ``websocket.accept`` message."""
    message: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
    if headers:
        message["headers"] = list(headers)
    return message


def send_message(
    text_data: str | None = None, bytes_data: bytes | None = None
) -> Message:
    """Build a ``websocket.send`` message carrying text or bytes.

    Raises:
        ValueError: neither or both of ``text_data`` and ``bytes_data`` given.
    """
    if text_data is not None and bytes_data is None:
        return {"type": "websocket.send", "text": text_data}
    if bytes_data is not None and text_data is None:
        return {"type": "websocket.send", "bytes": bytes_data}
    raise ValueError(
        "Expected exactly one of text_data or bytes_data, got "
        f"text_data={text_data!r} and bytes_data={bytes_data!r}."
    )


def close_message(code: int | bool | None = None, reason: str | None = None) -> Message:
    """Build a ``websocket.close`` message (``code=True`` means 1000)."""
    message: Message = {"type": "websocket.close"}
    if code is True:
        message["code"] = 1000
    elif code is not None and code is not False:
        message["code"] = code
    if reason:
        message["reason"] = reason
    return message


class _WebsocketHandlers(AsyncConsumer):
    """Handle ``websocket.*`` messages; shared by every WebSocket consumer."""

    groups: ClassVar[list[str] | tuple[str, ...]] = ()

    async def websocket_connect(self, message: Message) -> None:
        """Join ``groups``, then call ``connect()``; a denial closes the handshake."""
        await self._join_groups()
        try:
            await self._call_hook("connect")
        except DenyConnection:
            outbox = current_outbox(self)
            if outbox is not None:
                outbox.discard()
            await self.base_send(close_message())

    async def websocket_receive(self, message: Message) -> None:
        """Call ``receive()`` with the frame's text or bytes."""
        text = message.get("text")
        try:
            if text is not None:
                await self._call_hook("receive", text_data=text)
            else:
                await self._call_hook("receive", bytes_data=message.get("bytes"))
        except InvalidFrameError as exc:
            outbox = current_outbox(self)
            if outbox is not None:
                outbox.discard()
            logger.warning(
                "Closing WebSocket %s with %d: %s",
                self.scope.get("path", "?"),
                exc.code,
                exc.reason,
            )
            await self.base_send(close_message(exc.code))

    async def websocket_disconnect(self, message: Message) -> None:
        """Leave ``groups``, call ``disconnect(code)`` and stop the consumer."""
        await self._leave_groups()
        await self._call_hook("disconnect", message.get("code", 1005))
        raise StopConsumer

    async def _join_groups(self) -> None:
        if not self.groups:
            return
        if self.channel_layer is None:
            raise InvalidChannelLayerError(
                f"{type(self).__name__} declares groups {list(self.groups)!r} "
                "but has no channel layer: configure CHANNEL_LAYERS or set "
                "channel_layer_alias."
            )
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)

    async def _leave_groups(self) -> None:
        if self.groups and self.channel_layer is not None:
            for group in self.groups:
                await self.channel_layer.group_discard(group, self.channel_name)


class AsyncWebsocketConsumer(_WebsocketHandlers):
    """A WebSocket consumer with async hooks.

    Override ``connect()``, ``receive(text_data=None, bytes_data=None)`` and
    ``disconnect(code)``; handlers for channel layer messages are methods
    named after the message type.
    """

    async def connect(self) -> None:
        """Accept the connection; override to authorise or refuse it."""
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Handle a frame from the client; override."""

    async def disconnect(self, code: int) -> None:
        """Clean up after the connection closed with ``code``; override."""

    async def accept(
        self, subprotocol: str | None = None, headers: Headers | None = None
    ) -> None:
        """Accept the handshake, optionally choosing a subprotocol."""
        await self._deliver(accept_message(subprotocol, headers))

    async def send(  # type: ignore[override]
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        close: bool | int = False,
        *,
        immediately: bool = False,
    ) -> None:
        """Send a text or binary frame; ``close`` closes afterwards (with that code)."""
        await self._deliver(send_message(text_data, bytes_data), immediately)
        if close:
            await self.close(close)

    async def close(
        self, code: int | bool | None = None, reason: str | None = None
    ) -> None:
        """Close the connection, or refuse the handshake before ``accept()``."""
        await self._deliver(close_message(code, reason))


class WebsocketConsumer(_WebsocketHandlers, SyncConsumer):
    """A WebSocket consumer with plain (sync) hooks.

    Hooks and handlers run on a thread pool, so they may use the ORM
    directly. Handlers of one connection run one at a time; a slow handler
    does not hold up other connections.
    """

    def connect(self) -> None:
        """Accept the connection; override to authorise or refuse it."""
        self.accept()

    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Handle a frame from the client; override."""

    def disconnect(self, code: int) -> None:
        """Clean up after the connection closed with ``code``; override."""

    def accept(
        self, subprotocol: str | None = None, headers: Headers | None = None
    ) -> None:
        """Accept the handshake, optionally choosing a subprotocol."""
        self._deliver_sync(accept_message(subprotocol, headers))

    def send(  # type: ignore[override]
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        close: bool | int = False,
        *,
        immediately: bool = False,
    ) -> None:
        """Send a text or binary frame; ``close`` closes afterwards (with that code)."""
        self._deliver_sync(send_message(text_data, bytes_data), immediately)
        if close:
            self.close(close)

    def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the connection, or refuse the handshake before ``accept()``."""
        self._deliver_sync(close_message(code, reason))


class _JsonFrames:
    """Turn text frames into JSON content and back; shared by both flavours."""

    @classmethod
    def decode_json(cls, text_data: str) -> Any:
        """Parse a text frame; override to use another JSON library."""
        return json.loads(text_data)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        """Serialise ``content`` for a text frame; override to customise."""
        return json.dumps(content)

    def _content_of(self, text_data: str | None, bytes_data: bytes | None) -> Any:
        if text_data is None:
            raise InvalidFrameError(
                CLOSE_UNSUPPORTED_DATA,
                "Expected a text frame with JSON, got a binary frame.",
            )
        try:
            return self.decode_json(text_data)
        except ValueError as exc:
            raise InvalidFrameError(
                CLOSE_INVALID_PAYLOAD,
                f"Expected a JSON text frame, got invalid JSON: {exc}",
            ) from exc


class AsyncJsonWebsocketConsumer(_JsonFrames, AsyncWebsocketConsumer):
    """An async WebSocket consumer that speaks JSON.

    A binary frame closes the connection with 1003 and invalid JSON with
    1007, each with one log line.
    """

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Decode the frame and call ``receive_json()``."""
        await self.receive_json(self._content_of(text_data, bytes_data))

    async def receive_json(self, content: Any) -> None:
        """Handle decoded JSON content from the client; override."""

    async def send_json(
        self, content: Any, close: bool | int = False, *, immediately: bool = False
    ) -> None:
        """Encode ``content`` and send it as a text frame."""
        await self.send(self.encode_json(content), close=close, immediately=immediately)


class JsonWebsocketConsumer(_JsonFrames, WebsocketConsumer):
    """A sync WebSocket consumer that speaks JSON.

    A binary frame closes the connection with 1003 and invalid JSON with
    1007, each with one log line.
    """

    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Decode the frame and call ``receive_json()``."""
        self.receive_json(self._content_of(text_data, bytes_data))

    def receive_json(self, content: Any) -> None:
        """Handle decoded JSON content from the client; override."""

    def send_json(
        self, content: Any, close: bool | int = False, *, immediately: bool = False
    ) -> None:
        """Encode ``content`` and send it as a text frame."""
        self.send(self.encode_json(content), close=close, immediately=immediately)
