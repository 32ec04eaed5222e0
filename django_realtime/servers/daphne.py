"""Make daphne's WebSocket ``send`` wait for a client that does not read.

uvicorn's ASGI ``send`` waits while the socket's write buffer is full, so a
client that stops reading fills the bounded queues in front of it (a stream
queue, a channel layer's per-channel capacity) and their policies act.
daphne's ``send`` never waits: Twisted buffers whatever the client does not
take, without limit. A per-connection gate makes daphne's behave like
uvicorn's: while the connection's write buffer is over its high-water mark
(64 KiB), sends wait at the gate, and daphne stops reading from the client,
so a client that sends without reading (an echo client) stalls too.

Where the gate goes. Only daphne's own ``send`` leads to the connection, so
the gate is put on by the first component of ours that is handed it:
:class:`~django_realtime.routing.ProtocolTypeRouter`, :class:`FlowControl`,
``SessionMiddleware`` (so ``AuthMiddlewareStack``) or ``ConnectionLimits``
when outermost, or the WebSocket consumer itself when nothing comes before
it (:func:`gate_connection`). It passes the gated ``send`` on and puts the gate
in the scope under :data:`FLOW_GATE`, a key middleware copies along with
the scope, so the consumer also waits at it before calling whatever
``send`` it was given (:func:`flow_controlled`). So the gate holds:

- through every middleware inside that component, ours
  (``AllowedHostsOriginValidator``, ``AuthMiddlewareStack``,
  ``ConnectionLimits``) or your own, whatever it does with ``send``;
- not through a middleware outside it that wraps ``send`` (an error
  tracker's or a tracer's ASGI middleware around the whole application):
  wrap that in :class:`FlowControl` (``application =
  FlowControl(SentryAsgiMiddleware(ProtocolTypeRouter(...)))``), or move it
  inside ``ProtocolTypeRouter``. A consumer served by daphne without a
  gate logs one warning per process saying so. ``manage.py runserver``
  puts :class:`FlowControl` outermost itself.

The gate uses daphne and Twisted internals
(:mod:`django_realtime._compat.daphne`): with versions outside those
checked, there is none, and a warning says so once per process. It bounds
what daphne holds for a client that does not read; it does not bound what
it reads from a client whose handler is slower than its messages (daphne
queues those without limit: limit the message rate with
:class:`~django_realtime.middleware.limits.ConnectionLimits`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from django_realtime._compat import daphne as _daphne
from django_realtime.types import ASGIApp, Message, Scope, Send

__all__ = ["FLOW_GATE", "FlowControl", "flow_controlled", "gate_connection"]

logger = logging.getLogger(__name__)

#: The scope key of a WebSocket connection's gate, where there is one.
FLOW_GATE = "realtime.flow_gate"


class _FlowGate:
    """A Twisted push producer that holds sends, and reading, while paused.

    The transport calls :meth:`pauseProducing` when its write buffer passes
    its high-water mark, :meth:`resumeProducing` once the buffer has gone to
    the kernel, and :meth:`stopProducing` when the connection is lost. A
    close waits like a send, as under uvicorn: passed on at once, it would
    sit behind the unread bytes, autobahn would abort the connection when
    its closing handshake timed out and the client would read a 1006
    instead of the close code it was given.

    Args:
        send: daphne's ``send`` for the connection.
    """

    def __init__(self, send: Send) -> None:
        self.paused = False
        self._send = send
        self._resumed = asyncio.Event()
        self._resumed.set()
        # What stops and restarts reading from the client (the transport).
        self.reading: _daphne.PushProducer | None = None

    def pauseProducing(self) -> None:
        """Make sends wait and stop reading: the write buffer is full."""
        self.paused = True
        self._resumed.clear()
        if self.reading is not None:
            self.reading.pauseProducing()

    def resumeProducing(self) -> None:
        """Let the waiting sends go on and read again: the buffer has drained."""
        self.paused = False
        self._resumed.set()
        if self.reading is not None:
            self.reading.resumeProducing()

    def stopProducing(self) -> None:
        """Wake every waiting send for good: the connection is gone.

        The woken sends reach daphne, which drops them for a closed
        connection, so no consumer is left waiting.
        """
        self.reading = None
        self.paused = False
        self._resumed.set()

    def send(self, message: Message) -> Awaitable[None]:
        """Send ``message``, first waiting while the gate is closed.

        Not a coroutine function: open, it hands over daphne's own
        awaitable, so the send costs one attribute check more, not a
        coroutine more.
        """
        if self.paused:
            return self._when_open(self._send, message)
        return self._send(message)

    def guard(self, send: Send) -> Send:
        """Return ``send`` made to wait at this gate first."""

        def guarded(message: Message) -> Awaitable[None]:
            if self.paused:
                return self._when_open(send, message)
            return send(message)

        return guarded

    async def _when_open(self, send: Send, message: Message) -> None:
        await self._resumed.wait()
        await send(message)


_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _gate_for(send: Send) -> _FlowGate | None:
    """Return a new gate on the connection of daphne's raw ``send``, or ``None``."""
    protocol = _daphne.websocket_protocol(send)
    if protocol is None:
        return None
    gate = _FlowGate(send)
    reading = _daphne.attach_producer(protocol, gate)
    if reading is None:
        if getattr(protocol, "transport", None) is None:
            return None  # The connection has gone already.
        if not _daphne.supported():
            _warn_once(
                "versions",
                "Flow control is off for WebSockets on daphne: it relies on "
                "internals checked for other versions (%s; %s). A client that "
                "does not read can make this process hold without limit what "
                "is sent to it.",
                _daphne.DAPHNE.describe_installed(),
                _daphne.TWISTED.describe_installed(),
            )
        else:
            _warn_once(
                "producer",
                "Flow control is off for a WebSocket on daphne: its transport "
                "already has a producer (%r) that does not pass pause and "
                "resume on.",
                type(getattr(protocol.transport, "producer", None)).__name__,
            )
        return None
    gate.reading = reading
    return gate


def gate_connection(scope: Scope, send: Send) -> tuple[Scope, Send]:
    """Put a gate on a WebSocket connection served by daphne, once.

    Call it with what the server handed the application, before wrapping
    ``send``. With daphne's own ``send`` of a WebSocket connection and no
    gate in ``scope`` yet, returns a copy of ``scope`` with the gate under
    :data:`FLOW_GATE` and the gated ``send``; otherwise ``scope`` and
    ``send`` unchanged. Costs one type check for another server's ``send``.
    """
    if FLOW_GATE in scope:
        return scope, send
    gate = _gate_for(send)
    if gate is None:
        return scope, send
    return {**scope, FLOW_GATE: gate}, gate.send


def flow_controlled(send: Send, scope: Scope | None = None) -> Send:
    """Return a ``send`` for a WebSocket consumer that waits at its gate.

    With a gate in ``scope`` (put there by ``ProtocolTypeRouter`` or
    :class:`FlowControl`), the returned ``send`` waits at it before calling
    ``send``, whatever the middleware between made of ``send``. With
    daphne's own ``send`` and no gate, it puts one on. Otherwise ``send``
    is returned unchanged (uvicorn's waits by itself), with one warning per
    process when the server is daphne, whose ``send`` then never waits.

    A client that never reads again makes the send wait until the
    connection is lost (daphne's keepalive ends it after
    ``--ping-interval`` plus ``--ping-timeout``); meanwhile the consumer's
    bounded queues and their policies decide what happens to what is
    published for it. A connection lost while a send waits wakes it, and
    daphne drops the message.

    Args:
        send: The ``send`` the consumer was given.
        scope: The consumer's scope.
    """
    gate = None if scope is None else scope.get(FLOW_GATE)
    if isinstance(gate, _FlowGate):
        return send if send == gate.send else gate.guard(send)
    gate = _gate_for(send)
    if gate is not None:
        return gate.send
    if _daphne.serving():
        _warn_once(
            "outside",
            "Flow control is off for WebSockets on daphne: a middleware that no "
            "ProtocolTypeRouter encloses wraps the server's send (the consumer "
            "got %s). "
            "A client that does not read can make this process hold without "
            "limit what is sent to it. Wrap the outermost application in "
            "django_realtime.servers.daphne.FlowControl.",
            getattr(send, "__qualname__", type(send).__qualname__),
        )
    return send


class FlowControl:
    """Put the gate on WebSocket connections before any middleware wraps ``send``.

    ``ProtocolTypeRouter`` does the same for what it routes; use this
    outside a middleware of your own that wraps ``send`` around the whole
    application. It passes every scope on, and changes nothing under
    servers other than daphne.

    Args:
        application: The ASGI application to serve.
    """

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the application with the gate on a WebSocket connection."""
        if scope["type"] == "websocket":
            scope, send = gate_connection(scope, send)
        await self.application(scope, receive, send)
