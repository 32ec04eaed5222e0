"""One topic's consumer, run in process: its inbox and its ``send``.

A :class:`Child` is what a server is to a consumer on its own socket, for
one topic of a multiplexed socket: the consumer's ``receive`` takes the
events put in its :class:`Inbox` (see
:mod:`django_realtime.multiplex.socket`, which may let the consumer read
the socket itself), and its ``send`` wraps ``websocket.*`` events into the
topic's envelopes on the shared socket. The consumer runs as one task for
the topic's whole life: a frame costs neither a new task nor the channel
layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from django_realtime.multiplex.envelope import (
    binary_header,
    close_frame,
    data_prefix,
    open_frame,
)
from django_realtime.ops.logs import printable
from django_realtime.types import Message

__all__ = ["CLOSE_NO_STATUS", "CLOSE_REFUSED", "Child", "Inbox"]

logger = logging.getLogger("django_realtime.multiplex")

#: A topic refused with no code: what a browser reports for a refused socket.
CLOSE_REFUSED = 1006
#: A topic closed with no code: what a browser reports for a close without one.
CLOSE_NO_STATUS = 1005

#: The course of a topic: opening (until accept or close), open, closed.
OPENING, OPEN, CLOSED = 0, 1, 2


class Inbox:
    """The events waiting for one child's ``receive()``, in order.

    :meth:`put` wakes the child if it waits on :attr:`waiter`; the
    multiplexer's socket decides when a child waits (see
    :mod:`django_realtime.multiplex.socket`). Unbounded by itself: the
    socket checks the length against its limit before it puts a frame.
    """

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: deque[Message] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def put(self, message: Message) -> bool:
        """Add ``message``; wake the child if it waits; return whether it did."""
        self.items.append(message)
        waiter = self.waiter
        if waiter is None:
            return False
        self.waiter = None
        if waiter.done():
            return False
        waiter.set_result(None)
        return True


class Child:
    """One topic's consumer on a multiplexed socket, as its server sees it.

    Args:
        topic: The topic's name.
        scope: The consumer's scope.
        send: The shared socket's ``send``.
        ended: Called once when the topic ends by the consumer's close
            (with the child); the multiplexer forgets the topic.
        interrupt: Called (with the child) when an event was put in its
            inbox while it did not wait for one: it may be reading the socket.
    """

    __slots__ = (
        "_ended",
        "_header",
        "_interrupt",
        "_send",
        "inbox",
        "prefix",
        "scope",
        "state",
        "task",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        scope: dict[str, Any],
        send: Callable[[Message], Awaitable[None]],
        ended: Callable[[Child], None],
        interrupt: Callable[[Child], None],
    ) -> None:
        self.topic = topic
        self.scope = scope
        self.inbox = Inbox()
        self.state = OPENING
        self.task: asyncio.Task[None] | None = None
        self._send = send
        self._ended = ended
        self._interrupt = interrupt
        self.prefix = data_prefix(topic)
        self._header: bytes | None = None

    def send(self, message: Message) -> Awaitable[None]:
        """Send the consumer's ``message`` to its topic (the consumer's ``send``).

        A text frame of an open topic is handed to the socket's ``send``
        with no coroutine of its own in between; the rest is
        :meth:`_send_other`'s.

        Raises:
            RuntimeError: a frame before the consumer accepted, or an event
                of a type a WebSocket server does not take.
        """
        if message["type"] == "websocket.send" and self.state == OPEN:
            text = message.get("text")
            if text is not None:
                return self._send(
                    {"type": "websocket.send", "text": self.prefix + text}
                )
        return self._send_other(message)

    async def _send_other(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self.state != OPEN:
                self._refuse_send(message)
                return
            header = self._header
            if header is None:
                header = self._header = binary_header(self.topic)
            await self._send(
                {"type": "websocket.send", "bytes": header + message["bytes"]}
            )
        elif kind == "websocket.accept":
            if self.state == OPENING:
                self.state = OPEN
                await self._send(
                    {"type": "websocket.send", "text": open_frame(self.topic)}
                )
        elif kind == "websocket.close":
            if self.state == CLOSED:
                return
            code = message.get("code")
            if code is None:
                code = CLOSE_REFUSED if self.state == OPENING else CLOSE_NO_STATUS
            await self.end(code, message.get("reason") or "")
        else:
            raise RuntimeError(
                "Expected 'websocket.accept', 'websocket.send' or "
                f"'websocket.close' from topic {self.topic!r}, got {kind!r}."
            )

    def _refuse_send(self, message: Message) -> None:
        if self.state == CLOSED:
            logger.debug("Dropped a frame to topic %s: it is closed.", self.topic)
            return
        raise RuntimeError(
            f"Expected 'websocket.accept' or 'websocket.close' from topic "
            f"{self.topic!r} before a frame, got {printable(message['type'])}."
        )

    async def end(self, code: int, reason: str = "") -> None:
        """End the topic with ``code``: tell the client, then the consumer.

        The consumer gets ``websocket.disconnect`` with the code, as a
        server sends it after the consumer's own close.
        """
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self._ended(self)
        if not self.inbox.put({"type": "websocket.disconnect", "code": code}):
            self._interrupt(self)
        await self._send(
            {"type": "websocket.send", "text": close_frame(self.topic, code, reason)}
        )

    def disconnect(self, code: int) -> None:
        """End the topic from the client's side: the consumer gets the disconnect."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        if not self.inbox.put({"type": "websocket.disconnect", "code": code}):
            self._interrupt(self)
