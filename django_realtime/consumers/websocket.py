"""WebSocket consumers, async and sync, plain and JSON.

The protocol logic (groups, handshake, denial, bad frames, disconnect) lives
once, in :class:`_WebsocketHandlers`, as async handlers for the ASGI
``websocket.*`` messages. The user-facing hooks (``connect``, ``receive``,
``disconnect``, ``receive_json``) are async in the ``Async*`` classes and
plain functions in the others; the handlers await the former and run the
latter on the sync pool. The two flavours differ only in how ``accept()``,
``send()`` and ``close()`` are spelled.

Bad input gets a defined close code and one log line (the list, with what
the servers themselves refuse, is in ``docs/topics/hostile-input.rst``):

- a message over :attr:`~AsyncWebsocketConsumer.max_message_size` closes
  with 1009 before anything decodes it;
- a JSON consumer closes on a binary frame with 1003, on invalid JSON with
  1007, and on JSON nested deeper than the decoder goes with 1009;
- frames that arrive after such a close are dropped;
- a handler that raises closes the connection with 1011, the consumer
  leaves its groups and calls ``disconnect(1011)``, and the exception goes
  on to the server, which logs it.

daphne (autobahn) refuses to send close codes other than 1000 and
3000-4999. There 1003, 1007 and 1009 become 4015, 4000 and 4013 (4000 plus
the HTTP status of the same meaning, as the package's other codes: 4003 is
already "login required"), and daphne sends 1011 itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from typing import Any, ClassVar

from django_realtime.consumers.base import AsyncConsumer, SyncConsumer
from django_realtime.delivery.outbox import current_outbox
from django_realtime.exceptions import (
    DenyConnection,
    GroupsExpired,
    InvalidChannelLayerError,
    InvalidChannelName,
    InvalidFrameError,
    StopConsumer,
)
from django_realtime.ops import lifecycle, metrics
from django_realtime.servers.daphne import flow_controlled
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

logger = logging.getLogger(__name__)

# What a server raises for a send to a connection that has gone: OSError, as
# the ASGI spec asks (uvicorn's ClientDisconnected), or, on daphne while the
# close handshake runs, autobahn's Disconnected (a RuntimeError).
_GONE: tuple[type[Exception], ...]
try:
    from autobahn.exception import Disconnected as _AutobahnDisconnected
except ImportError:  # pragma: no cover - daphne, and so autobahn, is a dependency
    _GONE = (OSError,)
else:
    _GONE = (OSError, _AutobahnDisconnected)

# uvicorn's RuntimeError for a send after the connection's close.
_SERVER_CLOSED = "after sending 'websocket.close'"


#: RFC 6455 close code: a binary frame to a consumer that takes text (JSON).
CLOSE_UNSUPPORTED_DATA = 1003
#: RFC 6455 close code: a text frame that is not JSON.
CLOSE_INVALID_PAYLOAD = 1007
#: RFC 6455 close code: a message over ``max_message_size``, or nested too deep.
CLOSE_MESSAGE_TOO_BIG = 1009
#: RFC 6455 close code: a handler raised.
CLOSE_INTERNAL_ERROR = 1011
#: The connection fell behind: its consumer was taken out of its groups for
#: not reading the layer in time (the same code as a slow stream client's).
CLOSE_TOO_SLOW = 4008

#: The default ``max_message_size``: 1 MiB, daphne's own limit per message.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024

#: What 1003, 1007 and 1009 become on daphne, which (through autobahn) sends
#: only 1000 and 3000-4999: 4000 plus the HTTP status of the same meaning
#: (415 Unsupported Media Type, 400 Bad Request, 413 Content Too Large).
DAPHNE_CLOSE_CODES = {
    CLOSE_UNSUPPORTED_DATA: 4015,
    CLOSE_INVALID_PAYLOAD: 4000,
    CLOSE_MESSAGE_TOO_BIG: 4013,
}


def _over_limit(text: str | None, data: bytes | None, limit: int) -> str | None:
    """Return the size of a message over ``limit`` bytes, as words; else ``None``.

    Text is measured in UTF-8 bytes, as it was on the wire. A character is
    1 to 4 bytes, so only text of more than ``limit // 4`` characters is
    encoded to be measured, and text of more than ``limit`` characters not
    at all.
    """
    if text is None:
        size = len(data) if data is not None else 0
        return f"{size} bytes" if size > limit else None
    length = len(text)
    if length > limit:
        return f"at least {length} bytes"
    if length * 4 <= limit:
        return None
    # Lone surrogates reach here only from test tools; count, do not refuse.
    size = len(text.encode("utf-8", "surrogatepass"))
    return f"{size} bytes" if size > limit else None


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
    max_message_size: ClassVar[int | None] = DEFAULT_MAX_MESSAGE_SIZE

    # The connection's course, as far as the consumer needs it: the
    # handshake arrived, the consumer accepted it, closed it for a bad frame
    # (later frames are dropped), and the consumer's end (leaving groups,
    # calling disconnect()) has begun.
    _connecting: bool = False
    _accepted: bool = False
    _refused: bool = False
    _ended: bool = False

    # The server's send; sends go through _send_to_server().
    _server_send: Any = None
    # A close went out: what the consumer sends afterwards is dropped.
    _close_sent: bool = False
    # The accept went out (counted as an open connection in the metrics).
    _open: bool = False
    # lifecycle.opened() was called: lifecycle.closed() is due at the end.
    _tracked: bool = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the consumer; if a handler raises, close with 1011 and clean up."""
        # On daphne, sends wait while the socket's write buffer is full.
        self._server_send = flow_controlled(send)
        try:
            await super().__call__(
                scope,
                receive,
                self._send_to_server,  # type: ignore[arg-type]
            )
        except Exception as exc:
            if self._connecting and not self._accepted and metrics.counts:
                metrics.counts.failed += 1
            if self._connecting and not self._ended:
                await self._end_after(exc)
            raise
        finally:
            if self._tracked:
                lifecycle.closed(self)
            if self._open and metrics.counts:
                metrics.counts.closed += 1

    async def _send_to_server(self, message: Message) -> None:
        """Send ``message`` to the server, unless the connection is closing.

        A send after the consumer's close (a drain's, a refusal's, a handler
        that closed and then sent from another source), or to a client that
        has gone, is dropped with a DEBUG line: the disconnect is on its
        way, and the server would raise instead of sending.
        """
        if self._close_sent:
            logger.debug(
                "Dropped %s to WebSocket %s: it is closing.",
                message.get("type"),
                self.scope.get("path", "?"),
            )
            return
        try:
            await self._server_send(message)
        except _GONE as exc:
            self._close_sent = True
            logger.debug(
                "Dropped %s to WebSocket %s: the connection has gone (%r).",
                message.get("type"),
                self.scope.get("path", "?"),
                exc,
            )
            return
        except RuntimeError as exc:
            # uvicorn raises this, not an OSError, once it has closed the
            # connection itself (a protocol error, a keepalive timeout).
            if _SERVER_CLOSED not in str(exc):
                raise
            self._close_sent = True
            logger.debug(
                "Dropped %s to WebSocket %s: the connection has gone "
                "(the server closed it).",
                message.get("type"),
                self.scope.get("path", "?"),
            )
            return
        kind = message["type"]
        if (counts := metrics.counts) is not None:
            if kind == "websocket.send":
                counts.frames_out += 1
                counts.bytes_out += metrics.frame_size(
                    message.get("text"), message.get("bytes")
                )
            elif kind == "websocket.accept":
                counts.opened += 1
            elif kind == "websocket.close" and not self._open:
                counts.refused += 1
        if kind == "websocket.close":
            self._close_sent = True
        elif kind == "websocket.accept":
            self._open = True

    async def _end_after(self, exc: Exception) -> None:
        """Leave groups, call ``disconnect(1011)`` and close, after ``exc``.

        The exception goes on to the server, which logs it: this logs only
        a failure of the clean-up itself. The close is sent last, so that a
        test communicator sees the exception, as it always did.
        """
        self._ended = True
        path = self.scope.get("path", "?")
        try:
            await self._leave_groups()
            await self._call_hook("disconnect", CLOSE_INTERNAL_ERROR)
        except Exception:
            logger.exception(
                "Could not clean up WebSocket %s after %s.", path, type(exc).__name__
            )
        if self._accepted and not self._refused:
            try:
                await self.base_send(close_message(CLOSE_INTERNAL_ERROR))
            except Exception as close_error:
                # daphne refuses to send 1011, and sends it itself when the
                # exception reaches it; a client that has gone needs none.
                logger.debug("Could not close %s with 1011: %r", path, close_error)

    async def _groups_expired(self, exc: GroupsExpired) -> None:
        """Close with 4008: the client reconnects, joins again and catches up.

        The layer took the consumer out of its groups because it was busy
        (in a send to a client that does not read) for longer than the
        layer's ``expiry``; what the groups carried meanwhile is lost to it.
        """
        logger.warning(
            "Closing WebSocket %s with %d: %s",
            self.scope.get("path", "?"),
            CLOSE_TOO_SLOW,
            exc,
        )
        await self.base_send(close_message(CLOSE_TOO_SLOW))

    async def websocket_connect(self, message: Message) -> None:
        """Join ``groups``, then call ``connect()``; a denial closes the handshake.

        A gate of :mod:`django_realtime.ops.lifecycle` (the drain's, while
        the process drains) may refuse the handshake before ``connect()``:
        the client retries elsewhere.
        """
        self._connecting = True
        if (reason := lifecycle.refusal(self.scope)) is not None:
            logger.debug("Refused WebSocket %s: %s.", self.scope.get("path"), reason)
            await self.base_send(close_message())
            return
        await self._join_groups()
        try:
            await self._call_hook("connect")
        except DenyConnection:
            outbox = current_outbox(self)
            if outbox is not None:
                outbox.discard()
            await self.base_send(close_message())
            return
        if self._accepted:
            self._tracked = True
            lifecycle.opened(self)

    async def websocket_receive(self, message: Message) -> None:
        """Call ``receive()`` with the frame's text or bytes.

        A message over :attr:`max_message_size` closes the connection with
        1009 instead; so does an :exc:`InvalidFrameError` from ``receive()``,
        with its code. After either, frames still arriving are dropped.
        """
        if self._refused:
            logger.debug("Dropped a frame on %s: closing.", self.scope.get("path"))
            return
        text = message.get("text")
        data = None if text is not None else message.get("bytes")
        if (counts := metrics.counts) is not None:
            counts.frames_in += 1
            counts.bytes_in += metrics.frame_size(text, data)
        try:
            limit = self.max_message_size
            if limit is not None and (size := _over_limit(text, data, limit)):
                raise InvalidFrameError(
                    CLOSE_MESSAGE_TOO_BIG,
                    f"Expected a message of at most {limit} bytes "
                    f"(max_message_size of {limit}), got {size}.",
                )
            if text is not None:
                await self._call_hook("receive", text_data=text)
            else:
                await self._call_hook("receive", bytes_data=data)
        except InvalidFrameError as exc:
            await self._refuse(exc)

    async def _refuse(self, exc: InvalidFrameError) -> None:
        """Drop what the handler sent, close with ``exc.code``, log one line."""
        outbox = current_outbox(self)
        if outbox is not None:
            outbox.discard()
        self._refused = True
        path = self.scope.get("path", "?")
        code = exc.code
        try:
            await self.base_send(close_message(code))
        except Exception as error:
            # daphne refuses an RFC code (autobahn sends only 1000 and
            # 3000-4999) and changes nothing: send its replacement. Servers
            # also refuse any close once the connection is closing (the
            # client's close crossed ours): then the disconnect is on its way.
            fallback = DAPHNE_CLOSE_CODES.get(code)
            try:
                if fallback is None:
                    raise
                await self.base_send(close_message(fallback))
            except Exception:
                logger.warning(
                    "Refused a frame on WebSocket %s (%s) but could not close "
                    "with %d: %s",
                    path,
                    exc.reason,
                    code,
                    error,
                )
                return
            code = fallback
        logger.warning("Closing WebSocket %s with %d: %s", path, code, exc.reason)

    async def websocket_disconnect(self, message: Message) -> None:
        """Leave ``groups``, call ``disconnect(code)`` and stop the consumer."""
        self._ended = True
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
                # A group with a bad name was never joined: its join failed.
                with contextlib.suppress(InvalidChannelName):
                    await self.channel_layer.group_discard(group, self.channel_name)


class AsyncWebsocketConsumer(_WebsocketHandlers):
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
                f"Expected a JSON text frame, got invalid JSON: {exc}",
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
