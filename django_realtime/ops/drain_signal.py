"""Drain on SIGTERM, then stop the server as its own handler would.

SIGTERM belongs to the server: nothing here runs unless the drain is asked
to take it over (``REALTIME["DRAIN"]["SIGNAL"]`` or
:func:`django_realtime.ops.drain.handle_sigterm`). Then :func:`take_over`
replaces the server's SIGTERM handler with one that starts the drain on the
first SIGTERM and, on a second one, gives the signal back at once;
:func:`stop_server` gives it back after the drain: it calls the server's
handler, which stops the server as it would have. SIGINT is never touched.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from django_realtime._compat import asyncio as _asyncio

__all__ = ["stop_server", "take_over", "under_server"]

# The drain's logger: the drain reports under one name.
logger = logging.getLogger("django_realtime.ops.drain")

# The server's SIGTERM handler that ours replaced (None: not replaced).
_server_handler: Any = None
# Starts the drain; returns False when there is nothing to drain on.
_start: Callable[[], bool] | None = None
_received = False
_stopped = False


def under_server() -> bool:
    """Return whether this runs in a server's main thread.

    A server handles SIGTERM in the main thread; a test run or a script
    leaves the default handler, and a thread cannot receive signals.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    return callable(signal.getsignal(signal.SIGTERM))


def take_over(start: Callable[[], bool]) -> bool:
    """Replace the server's SIGTERM handler with one that calls ``start``.

    Call it in the main thread. A first SIGTERM calls ``start``, which
    begins the drain and returns ``True``, or returns ``False`` when there
    is nothing to drain (then the server stops at once); the drain calls
    :func:`stop_server` when it is done. A second SIGTERM stops the server
    at once.

    Returns:
        Whether SIGTERM was taken over: not when the server reads it
        through ``loop.add_signal_handler()``, nor on a Python version where
        that cannot be told from the handler
        (:mod:`django_realtime._compat.asyncio`; a warning says so in both
        cases), nor when nothing handles it.
    """
    global _server_handler, _start
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        return False
    if handler is not _on_sigterm:
        kind = _asyncio.handler_kind(handler)
        if kind is _asyncio.HandlerKind.LOOP:
            logger.warning(
                "The server handles SIGTERM with loop.add_signal_handler(): "
                "SIGTERM does not drain; run `manage.py drain` before stopping it."
            )
            return False
        if kind is _asyncio.HandlerKind.UNKNOWN:
            logger.warning(
                "SIGTERM does not drain: whether the server's SIGTERM handler "
                "(%s) can be chained is known only for other Python versions "
                "(%s). Run `manage.py drain` before stopping the server.",
                getattr(handler, "__qualname__", type(handler).__qualname__),
                _asyncio.describe_running(),
            )
            return False
        _server_handler = handler
    _start = start
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def stop_server() -> None:
    """Stop the process as SIGTERM would have without the drain (once).

    With SIGTERM taken over, call the server's handler (put back first);
    otherwise send SIGTERM to this process, for whoever handles it.
    """
    global _server_handler, _stopped
    if _stopped:
        return
    _stopped = True
    handler, _server_handler = _server_handler, None
    if handler is None:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    signal.signal(signal.SIGTERM, handler)
    handler(signal.SIGTERM, None)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Start the drain; on a second SIGTERM, or with nothing to drain, stop."""
    global _received
    if _received or _start is None:
        stop_server()
        return
    _received = True
    if not _start():
        stop_server()
