"""WebSocket consumers, async and sync, plain and JSON.

The protocol logic (groups, handshake, denial, bad frames, disconnect) lives
once, in :class:`~django_realtime.consumers.protocol.WebsocketProtocol`, as
async handlers for the ASGI ``websocket.*`` messages. The user-facing hooks
(``connect``, ``receive``, ``disconnect``, ``receive_json``) are async in
the ``Async*`` classes and plain functions in the others; the handlers await
the former and run the latter on the sync pool. The two flavours differ
only in how ``accept()``, ``send()`` and ``close()`` are spelled.

A JSON consumer closes on a binary frame with 1003, on invalid JSON with
1007, and on JSON nested deeper than the decoder goes with 1009 (on daphne
4015, 4000 and 4013: see :mod:`django_realtime.consumers.frames`, whose
close codes this module also offers).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django_realtime.consumers.base import SyncConsumer
from django_realtime.consumers.frames import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_TOO_SLOW,
    CLOSE_UNSUPPORTED_DATA,
    DAPHNE_CLOSE_CODES,
    DEFAULT_MAX_MESSAGE_SIZE,
    accept_message,
    close_message,
    send_message,
)
from django_realtime.consumers.protocol import WebsocketProtocol
from django_realtime.delivery.outbox import current_outbox
from django_realtime.delivery.sends import route
from django_realtime.exceptions import InvalidFrameError
from django_realtime.ops.logs import printable
from django_realtime.types import Headers, Message

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNSUPPORTED_DATA",
    "DAPHNE_CLOSE_CODES",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "JsonWebsocketConsumer",
    "WebsocketConsumer",
]


class AsyncWebsocketConsumer(WebsocketProtocol):
    """A WebSocket consumer with async hooks.

    Override ``connect()``, ``receive(text_data=None, bytes_data=None)`` and
    ``disconnect(code)``; handlers for channel layer messages are methods
    named after the message type.

    Attributes:
        max_message_size: Most bytes a message from the client may have
            (UTF-8 bytes for text), checked before ``receive()`` sees it:
            over it, the connection is closed with 1009 and one warning is
            logged. ``None`` takes any size (the server's own limit still
            applies: see ``docs/topics/hostile-input.rst``). Default
            :data:`DEFAULT_MAX_MESSAGE_SIZE` (1 MiB).
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
        self._accepted = True
        if (sending := self._deliver(accept_message(subprotocol, headers))) is not None:
            await sending

    async def send(  # type: ignore[override]
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        close: bool | int = False,
        *,
        immediately: bool = False,
    ) -> None:
        """Send a text or binary frame; ``close`` closes afterwards (with that code)."""
        # _deliver() and, for text, send_message(), inlined: two frames less
        # for every send.
        if text_data is not None and bytes_data is None:
            message: Message = {"type": "websocket.send", "text": text_data}
        else:
            message = send_message(text_data, bytes_data)
        sending = route(current_outbox(self), self.base_send, (message,), immediately)
        if sending is not None:
            await sending
        if close:
            await self.close(close)

    async def close(
        self, code: int | bool | None = None, reason: str | None = None
    ) -> None:
        """Close the connection, or refuse the handshake before ``accept()``."""
        if (sending := self._deliver(close_message(code, reason))) is not None:
            await sending


class WebsocketConsumer(WebsocketProtocol, SyncConsumer):
    """A WebSocket consumer with plain (sync) hooks.

    Hooks and handlers run on a thread pool, so they may use the ORM
    directly. Handlers of one connection run one at a time; a slow handler
    does not hold up other connections.

    Attributes:
        max_message_size: Most bytes a message from the client may have
            (UTF-8 bytes for text), checked before ``receive()`` sees it:
            over it, the connection is closed with 1009 and one warning is
            logged. ``None`` takes any size (the server's own limit still
            applies: see ``docs/topics/hostile-input.rst``). Default
            :data:`DEFAULT_MAX_MESSAGE_SIZE` (1 MiB).
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
        self._accepted = True
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
                f"Expected a JSON text frame, got invalid JSON: {printable(exc)}",
            ) from exc
        except RecursionError:
            # json's C decoder nests as deep as the interpreter's recursion
            # limit, then raises this: "[" * 100_000 would crash the consumer.
            raise InvalidFrameError(
                CLOSE_MESSAGE_TOO_BIG,
                "Expected JSON nested less deeply than the recursion limit "
                f"({sys.getrecursionlimit()}), got deeper nesting.",
            ) from None


class AsyncJsonWebsocketConsumer(_JsonFrames, AsyncWebsocketConsumer):
    """An async WebSocket consumer that speaks JSON.

    A binary frame closes the connection with 1003, invalid JSON with 1007
    and JSON nested too deep with 1009, each with one log line.
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

    A binary frame closes the connection with 1003, invalid JSON with 1007
    and JSON nested too deep with 1009, each with one log line.
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
