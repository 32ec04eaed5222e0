"""daphne and Twisted internals: a WebSocket connection's transport.

:mod:`django_realtime.servers.daphne` makes daphne's ``send`` wait while a
connection's write buffer is full, and stops reading from a client while
it does. ASGI gives an application no handle on the connection, so it goes
through these internals:

- daphne hands each application ``functools.partial(server.handle_reply,
  protocol)`` as its ``send``: that is how the connection's
  ``daphne.ws_protocol.WebSocketProtocol`` is found, and its ``transport``;
- daphne upgrades a WebSocket from Twisted's ``HTTPChannel``, which stays
  registered as the transport's producer (a transport takes only one) and
  passes pause and resume on to the producer registered with it;
- a TLS transport keeps its producer in a private ``_producer`` membrane
  whose own ``_producer`` is the channel (Twisted offers no public way to
  look through it).

Checked: daphne 4.1.0 and 4.2.3, Twisted 22.4.0 and 26.10.0 (:data:`DAPHNE`,
:data:`TWISTED`). Outside the windows :func:`attach_producer` attaches
nothing, and :mod:`django_realtime.servers.daphne` logs a warning that flow
control is off.

daphne (and with it Twisted's reactor) is looked up in ``sys.modules``,
never imported: importing ``daphne.server`` installs a reactor, and when it
is not loaded it is not the server.

:func:`send_failures` is about public API: what a server raises for a
send to a connection that has gone.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Protocol

from django_realtime._compat import Window

__all__ = [
    "DAPHNE",
    "TWISTED",
    "PushProducer",
    "attach_producer",
    "send_failures",
    "serving",
    "supported",
    "websocket_protocol",
]

#: The daphne versions the internals were checked against.
DAPHNE = Window("daphne", (4, 1), (4, 3))
#: The Twisted versions the internals were checked against.
TWISTED = Window("Twisted", (22, 4), (26, 11))


def send_failures() -> tuple[type[Exception], ...]:
    """Return the exceptions a server raises for a send to a connection gone.

    ``OSError``, as the ASGI spec asks (uvicorn's ``ClientDisconnected``),
    and, on daphne while the close handshake runs, autobahn's
    ``Disconnected`` (a ``RuntimeError``). autobahn, heavy to import, is not
    imported for it: if it is not loaded, none of its exceptions can be
    raised. Meant for an ``except`` clause, which evaluates it only when an
    exception reaches it.
    """
    exception = sys.modules.get("autobahn.exception")
    disconnected = getattr(exception, "Disconnected", None)
    if isinstance(disconnected, type) and issubclass(disconnected, Exception):
        return (OSError, disconnected)
    return (OSError,)


class PushProducer(Protocol):
    """What Twisted calls on a streaming producer (``IPushProducer``)."""

    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def stopProducing(self) -> None: ...


@functools.cache
def supported() -> bool:
    """Return whether the installed daphne and Twisted are in their windows."""
    return DAPHNE.covers_installed() and TWISTED.covers_installed()


def serving() -> bool:
    """Return whether this process serves with daphne (its reactor runs)."""
    if "daphne.server" not in sys.modules:
        return False
    # An installed reactor takes the place of its module in sys.modules.
    reactor = sys.modules.get("twisted.internet.reactor")
    return bool(getattr(reactor, "running", False))


def websocket_protocol(send: Any) -> Any:
    """Return the ``WebSocketProtocol`` behind daphne's raw ``send``, or ``None``.

    ``None`` too for any other ``send``: another server's, or daphne's
    wrapped by a middleware.
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
    ``ssl:`` endpoint) keeps it wrapped in a membrane (and its ``producer``
    is the TCP transport's: the membrane).
    """
    membrane = getattr(transport, "_producer", None)
    if membrane is not None:
        return getattr(membrane, "_producer", None)
    return getattr(transport, "producer", None)


def attach_producer(protocol: Any, producer: PushProducer) -> Any:
    """Have ``protocol``'s write buffer pause and resume ``producer``.

    Args:
        protocol: daphne's ``WebSocketProtocol``
            (from :func:`websocket_protocol`).
        producer: Paused while the connection's write buffer is over its
            high-water mark, resumed once it has drained, stopped when the
            connection is lost.

    Returns:
        The connection's transport, whose ``pauseProducing()`` and
        ``resumeProducing()`` stop and restart reading from the client; or
        ``None`` when nothing was attached: daphne or Twisted outside
        their windows, the connection already gone, or the transport's
        producer slot taken by something that would not pass pause and
        resume on.
    """
    if not supported():
        return None
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return None
    current = _producer_of(transport)
    http = sys.modules.get("twisted.web.http")
    try:
        if current is None:
            transport.registerProducer(producer, True)
        elif http is not None and isinstance(current, http.HTTPChannel):
            # The channel daphne upgraded the connection from: it passes
            # pause and resume on to the producer registered with it.
            current.registerProducer(producer, True)
        else:
            return None
    except RuntimeError:
        # The slot of the transport or of the channel is taken.
        return None
    return transport
