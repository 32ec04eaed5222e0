"""Where connections announce their course, and features listen.

The consumers are the lowest layer that knows a connection; the features
that care about connections (the drain, metrics, limits, an ops page) sit
above them. So the consumers do not import those features: they report here,
and the features register here. This module imports nothing of the package.

A connection calls, in order:

1. :func:`refusal` at the handshake, before ``connect()``: a registered
   gate (the drain, say) may refuse it, and the reason is logged;
2. :func:`opened` once the handshake is accepted;
3. :func:`closed` when the connection has ended, whatever the reason
   (only after :func:`opened`).

Observers run on the event loop, inline: they must be quick and must not
raise (an exception is logged and the others still run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "ConnectionObserver",
    "Gate",
    "add_gate",
    "closed",
    "observe",
    "opened",
    "refusal",
    "remove_gate",
    "unobserve",
]

logger = logging.getLogger(__name__)


class ConnectionObserver(Protocol):
    """What a feature implements to follow connections."""

    def opened(self, connection: Any) -> None:
        """Note that ``connection`` accepted its handshake."""

    def closed(self, connection: Any) -> None:
        """Note that ``connection`` has ended."""


#: A gate returns why a handshake is refused (a short phrase), or ``None``.
Gate = Callable[[dict[str, Any]], str | None]

_observers: tuple[ConnectionObserver, ...] = ()
_gates: tuple[Gate, ...] = ()


def observe(observer: ConnectionObserver) -> None:
    """Call ``observer`` for every connection from now on (idempotent)."""
    global _observers
    if observer not in _observers:
        _observers = (*_observers, observer)


def unobserve(observer: ConnectionObserver) -> None:
    """Stop calling ``observer``."""
    global _observers
    _observers = tuple(o for o in _observers if o is not observer)


def add_gate(gate: Gate) -> None:
    """Ask ``gate`` about every handshake from now on (idempotent)."""
    global _gates
    if gate not in _gates:
        _gates = (*_gates, gate)


def remove_gate(gate: Gate) -> None:
    """Stop asking ``gate``."""
    global _gates
    _gates = tuple(g for g in _gates if g is not gate)


def refusal(scope: dict[str, Any]) -> str | None:
    """Return why the handshake of ``scope`` is refused, or ``None``."""
    for gate in _gates:
        reason = gate(scope)
        if reason is not None:
            return reason
    return None


def opened(connection: Any) -> None:
    """Tell the observers that ``connection`` accepted its handshake."""
    for observer in _observers:
        try:
            observer.opened(connection)
        except Exception:
            logger.exception("Connection observer %r failed on open.", observer)


def closed(connection: Any) -> None:
    """Tell the observers that ``connection`` has ended."""
    for observer in _observers:
        try:
            observer.closed(connection)
        except Exception:
            logger.exception("Connection observer %r failed on close.", observer)
