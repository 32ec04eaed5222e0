"""Make daphne's WebSocket ``send`` wait for a client that does not read.

uvicorn's ASGI ``send`` waits while the socket's write buffer is full, so a
client that stops reading fills the bounded queues in front of it (a stream
queue, a channel layer's per-channel capacity) and their policies act.
daphne's ``send`` never waits: autobahn writes each frame to Twisted's
transport, which buffers without limit unless a producer is registered,
and daphne registers none. :func:`flow_controlled` registers one per
connection and returns a ``send`` that waits while the transport has paused
it, so the same bounds hold under daphne.

Where the producer goes: daphne upgrades a WebSocket from its HTTP channel,
which stays registered as the transport's producer (a transport takes only
one) and passes pause and resume on to a producer registered with it, so
ours is registered with the channel, on TCP and on TLS endpoints alike.
autobahn registers no producer of its own.
"""

import asyncio
import functools
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["flow_controlled"]

logger = logging.getLogger(__name__)

Send = Callable[[Any], Awaitable[None]]


class _FlowGate:
    """A Twisted push producer whose ``send`` waits while it is paused.

    The transport calls :meth:`pauseProducing` when its write buffer passes
    its high-water mark (64 KiB), :meth:`resumeProducing` once the buffer
    has gone to the kernel, and :meth:`stopProducing` when the connection is
    lost. A close waits like a send, as under uvicorn: passed on at once,
    it would sit behind the unread bytes, autobahn would abort the
    connection when its closing handshake timed out (1 s) and the client
    would read a 1006 instead of the close code it was given.
    """

    def __init__(self, send: Send) -> None:
        self.paused = False
        self._send = send
        self._resumed = asyncio.Event()
        self._resumed.set()

    def pauseProducing(self) -> None:
        """Make sends wait: the transport's write buffer is full."""
        self.paused = True
        self._resumed.clear()

    def resumeProducing(self) -> None:
        """Let the waiting sends go on: the write buffer has drained."""
        self.paused = False
        self._resumed.set()

    def stopProducing(self) -> None:
        """Wake every waiting send for good: the connection is gone.

        The woken sends reach daphne, which drops them for a closed
        connection, so no consumer is left waiting.
        """
        self.resumeProducing()

    def send(self, message: Any) -> Awaitable[None]:
        """Send ``message``, first waiting while the transport is paused.

        Not a coroutine function: unpaused, it hands over daphne's own
        awaitable, so the send costs one attribute check more, not a
        coroutine more.
        """
        if self.paused:
            return self._send_when_resumed(message)
        return self._send(message)

    async def _send_when_resumed(self, message: Any) -> None:
        await self._resumed.wait()
        await self._send(message)


def _daphne_protocol(send: Any) -> Any:
    """Return the WebSocket protocol behind daphne's ``send``, or ``None``.

    daphne hands each application ``functools.partial(server.handle_reply,
    protocol)``. daphne is looked up in ``sys.modules`` rather than
    imported: when it is not loaded, it is not the server.
    """
    if type(send) is not functools.partial or not send.args:
        return None
    server = sys.modules.get("daphne.server")
    ws_protocol = sys.modules.get("daphne.ws_protocol")
    if server is None or ws_protocol is None:
        return None
    if getattr(send.func, "__func__", None) is not server.Server.handle_reply:
        return None
    protocol = send.args[0]
    if not isinstance(protocol, ws_protocol.WebSocketProtocol):
        return None
    return protocol


def _producer_of(transport: Any) -> Any:
    """Return the producer registered with ``transport``, or ``None``.

    A TCP transport keeps it as ``producer``; a TLS transport (daphne's
    ``ssl:`` endpoint) keeps it wrapped in a membrane, which Twisted offers
    no public way to look through (and its ``producer`` is the TCP
    transport's: the membrane).
    """
    membrane = getattr(transport, "_producer", None)
    if membrane is not None:
        return getattr(membrane, "_producer", None)
    return getattr(transport, "producer", None)


def _register(transport: Any, gate: _FlowGate) -> bool:
    """Register ``gate`` as the producer feeding ``transport``.

    Returns:
        Whether it is registered. It is not when the transport's producer
        slot is taken by something other than daphne's HTTP channel, which
        would not pass pause and resume on.
    """
    current = _producer_of(transport)
    try:
        if current is None:
            transport.registerProducer(gate, True)
        elif getattr(current, "_networkProducer", None) is transport:
            # daphne's HTTP channel: it passes pause and resume on to the
            # producer registered with it. Its attribute is private, but it
            # is how the channel tells the transport it was made for.
            current.registerProducer(gate, True)
        else:
            return False
    except RuntimeError:
        # The slot of the transport or of the channel is taken.
        return False
    return True


def flow_controlled(send: Send) -> Send:
    """Return a ``send`` that waits while daphne cannot pass data on.

    ``send`` is returned unchanged unless it is daphne's ``send`` of a
    WebSocket connection. Otherwise the returned ``send`` waits, before
    passing a message on, while the connection's write buffer is over its
    high-water mark (64 KiB), as uvicorn's does; with nothing to wait for it
    costs one attribute check over daphne's own. A client that never reads
    again makes it wait until the connection is lost (daphne's keepalive
    ends it after ``--ping-interval`` plus ``--ping-timeout``); meanwhile the
    consumer's bounded queues and their policies decide what happens to
    what is published for it. A connection lost while a send waits wakes
    it, and daphne drops the message.

    Args:
        send: The ASGI ``send`` callable the server gave the application.

    Returns:
        ``send`` itself, or a flow-controlled ``send`` for the same
        connection.
    """
    protocol = _daphne_protocol(send)
    if protocol is None:
        return send
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return send
    gate = _FlowGate(send)
    if not _register(transport, gate):
        logger.debug(
            "No flow control for %r: its transport's producer is %r.",
            protocol,
            getattr(transport, "producer", None),
        )
        return send
    return gate.send
