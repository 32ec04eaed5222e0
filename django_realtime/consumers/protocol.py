"""The WebSocket protocol of consumers: the ``websocket.*`` message handlers.

:class:`WebsocketProtocol` handles the ASGI server's messages once, async,
for every WebSocket consumer: the handshake (groups, the lifecycle gates,
``connect()``, a denial), frames (the size limit, ``receive()``, a refused
frame), the disconnect (groups, ``disconnect()``), a handler that raises,
and sends to a connection that is closing or gone. The user-facing hooks
and the spelling of ``accept()``, ``send()`` and ``close()`` are in
:mod:`django_realtime.consumers.websocket`.

Bad input gets a defined close code and one log line (the codes are in
:mod:`django_realtime.consumers.frames`):

- a message over ``max_message_size`` closes with 1009 before anything
  decodes it;
- an :exc:`~django_realtime.exceptions.InvalidFrameError` from
  ``receive()`` (a JSON consumer's binary frame, invalid JSON, JSON nested
  too deep) closes with its code;
- frames that arrive after such a close are dropped;
- a handler that raises closes the connection with 1011, the consumer
  leaves its groups and calls ``disconnect(1011)``, and the exception goes
  on to the server, which logs it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, ClassVar

from django_realtime._compat.daphne import send_failures
from django_realtime._compat.uvicorn import is_send_after_close
from django_realtime.consumers.base import AsyncConsumer
from django_realtime.consumers.frames import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_TOO_SLOW,
    DAPHNE_CLOSE_CODES,
    DEFAULT_MAX_MESSAGE_SIZE,
    close_message,
    over_limit,
)
from django_realtime.delivery.outbox import current_outbox
from django_realtime.delivery.sends import REFUSED, settle
from django_realtime.exceptions import (
    DenyConnection,
    GroupsExpired,
    InvalidChannelLayerError,
    InvalidChannelName,
    InvalidFrameError,
    StopConsumer,
)
from django_realtime.ops import lifecycle, metrics
from django_realtime.ops.logs import printable
from django_realtime.servers.daphne import flow_controlled
from django_realtime.types import Message

__all__ = ["WebsocketProtocol"]

logger = logging.getLogger(__name__)


class WebsocketProtocol(AsyncConsumer):
    """Handle ``websocket.*`` messages; the base of every WebSocket consumer.

    The subclasses in :mod:`django_realtime.consumers.websocket` add the
    hooks and spell ``accept()``, ``send()`` and ``close()``.
    """

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
    # Frames received and sent on this connection (the ops page shows them).
    _frames_in: int = 0
    _frames_out: int = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the consumer; if a handler raises, close with 1011 and clean up."""
        # On daphne, sends wait while the socket's write buffer is full.
        self._server_send = flow_controlled(send, scope)
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
                printable(self.scope.get("path", "?")),
            )
            return
        try:
            await self._server_send(message)
        except send_failures() as exc:
            self._close_sent = True
            logger.debug(
                "Dropped %s to WebSocket %s: the connection has gone (%r).",
                message.get("type"),
                printable(self.scope.get("path", "?")),
                exc,
            )
            return
        except RuntimeError as exc:
            # uvicorn raises this, not an OSError, once it has closed the
            # connection itself (a protocol error, a keepalive timeout).
            if not is_send_after_close(exc):
                raise
            self._close_sent = True
            logger.debug(
                "Dropped %s to WebSocket %s: the connection has gone "
                "(the server closed it).",
                message.get("type"),
                printable(self.scope.get("path", "?")),
            )
            return
        kind = message["type"]
        if kind == "websocket.send":
            self._frames_out += 1
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
        path = printable(self.scope.get("path", "?"))
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
            printable(self.scope.get("path", "?")),
            CLOSE_TOO_SLOW,
            printable(exc),
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
            logger.debug(
                "Refused WebSocket %s: %s.", printable(self.scope.get("path")), reason
            )
            await self.base_send(close_message())
            return
        await self._join_groups()
        try:
            await self._call_hook("connect")
        except DenyConnection:
            self._drop_held()
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
            logger.debug(
                "Dropped a frame on %s: closing.", printable(self.scope.get("path"))
            )
            return
        self._frames_in += 1
        text = message.get("text")
        data = None if text is not None else message.get("bytes")
        if (counts := metrics.counts) is not None:
            counts.frames_in += 1
            counts.bytes_in += metrics.frame_size(text, data)
        try:
            limit = self.max_message_size
            if limit is not None and (size := over_limit(text, data, limit)):
                raise InvalidFrameError(
                    CLOSE_MESSAGE_TOO_BIG,
                    f"Expected a message of at most {limit} bytes "
                    f"(max_message_size of {limit}), got {size}.",
                )
            # _call_hook(), inlined for an async receive(): one frame less
            # for every frame.
            receive = self.receive  # type: ignore[attr-defined]
            is_async = self._hooks.get("receive")
            if is_async is None:
                is_async = self._hook_is_async("receive")
            if not is_async:
                if text is not None:
                    await self._invoke(receive, False, text_data=text)
                else:
                    await self._invoke(receive, False, bytes_data=data)
            elif text is not None:
                await receive(text_data=text)
            else:
                await receive(bytes_data=data)
        except InvalidFrameError as exc:
            await self._refuse(exc)

    async def _refuse(self, exc: InvalidFrameError) -> None:
        """Drop what the handler sent, close with ``exc.code``, log one line."""
        self._drop_held()
        self._refused = True
        path = printable(self.scope.get("path", "?"))
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
                    printable(exc.reason),
                    code,
                    error,
                )
                return
            code = fallback
        logger.warning(
            "Closing WebSocket %s with %d: %s", path, code, printable(exc.reason)
        )

    def _drop_held(self) -> None:
        """Drop what the running handler held: it refused the handshake or a frame.

        The refusal itself (a close) goes to the server at once.
        """
        outbox = current_outbox(self)
        if outbox is not None:
            settle(outbox, REFUSED)

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
