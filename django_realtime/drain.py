"""Graceful drain: close every WebSocket with 1012 in batches, then stop.

(Placeholder API, filled in by the drain work: ``track``/``untrack`` are
called by every WebSocket consumer when its handshake is accepted and when
it ends; ``is_draining`` is asked at every handshake.)
"""

from __future__ import annotations

from typing import Any

_live: set[Any] = set()
_draining = False


def track(consumer: Any) -> None:
    """Count ``consumer`` among the connections a drain closes."""
    _live.add(consumer)


def untrack(consumer: Any) -> None:
    """Forget ``consumer``: its connection has ended."""
    _live.discard(consumer)


def is_draining() -> bool:
    """Return whether this process is draining (refusing new handshakes)."""
    return _draining
