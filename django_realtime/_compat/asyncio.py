"""asyncio internals: the signal handler ``loop.add_signal_handler()`` installs.

:mod:`django_realtime.ops.drain_signal` puts the drain in front of a
server's SIGTERM handler, then calls that handler to stop the server. That
works for a handler that Python calls when the signal arrives (Twisted's,
under daphne; uvicorn's). It cannot work for a server that reads SIGTERM
with ``loop.add_signal_handler()`` (hypercorn): the loop learns of the
signal from the wakeup file descriptor it gave
``signal.set_wakeup_fd()``, whatever Python handler is installed, and the
Python handler it installs does nothing. Replacing that handler would not
keep SIGTERM from stopping the server at once, and calling it after the
drain would not stop the server at all.

That do-nothing handler is ``asyncio.unix_events._sighandler_noop``, which
asyncio does not document. Loops and servers that read signals the same
way install a function of their own under the same name, so the name is
what is recognised (:func:`handler_kind`).

Checked: CPython 3.11.7, 3.12.1 and 3.13.0 (:data:`WINDOW`). Outside the
window :func:`handler_kind` cannot tell one handler from another and
answers :attr:`HandlerKind.UNKNOWN` for every one: the drain then leaves
SIGTERM to the server and logs a warning, rather than take over a signal
it might not receive.
"""

from __future__ import annotations

import asyncio
import enum
import platform
import signal
import sys
from collections.abc import Callable
from typing import Any

from django_realtime._compat import Window

__all__ = [
    "LOOP_HANDLER_NAME",
    "SUPPORTED",
    "WINDOW",
    "HandlerKind",
    "describe_running",
    "handler_kind",
    "shape_problems",
]

#: The Python versions the handler's name was checked against.
WINDOW = Window("Python", (3, 11), (3, 14))

#: The name of the do-nothing handler ``loop.add_signal_handler()`` installs.
LOOP_HANDLER_NAME = "_sighandler_noop"


def _running_version() -> str:
    return platform.python_version()


def describe_running() -> str:
    """Return the running Python against the window, for a message."""
    return f"Python {_running_version()} running; checked: {WINDOW}"


#: Whether the running Python is in :data:`WINDOW`.
SUPPORTED = WINDOW.contains(_running_version())


class HandlerKind(enum.Enum):
    """What a callable signal handler is, as far as chaining it goes."""

    #: A function Python calls with the signal: it can be replaced, and
    #: called later to do what it would have done.
    PYTHON = "python"
    #: The placeholder of an event loop that reads the signal from its
    #: wakeup file descriptor: the loop acts on the signal whatever the
    #: Python handler is.
    LOOP = "loop"
    #: Python outside :data:`WINDOW`: which of the two it is cannot be told.
    UNKNOWN = "unknown"


def handler_kind(handler: Callable[..., Any]) -> HandlerKind:
    """Return what ``handler``, a callable ``signal.getsignal()`` returned, is."""
    if not SUPPORTED:
        return HandlerKind.UNKNOWN
    if getattr(handler, "__name__", None) == LOOP_HANDLER_NAME:
        return HandlerKind.LOOP
    return HandlerKind.PYTHON


def shape_problems() -> list[str]:
    """Return how asyncio differs from the expected shape (empty: it does not).

    Looks at the running Python, whatever its version: in the main thread,
    has a new event loop handle SIGUSR1 and looks at the handler that put
    in place, then puts the previous handler back.
    """
    if sys.platform == "win32":
        return ["loop.add_signal_handler() is not available on Windows"]
    problems = []
    previous = signal.getsignal(signal.SIGUSR1)
    loop = asyncio.new_event_loop()
    try:
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        installed = signal.getsignal(signal.SIGUSR1)
        loop.remove_signal_handler(signal.SIGUSR1)
    finally:
        loop.close()
        if previous is not None:  # None: not installed from Python
            signal.signal(signal.SIGUSR1, previous)
    name = getattr(installed, "__name__", None)
    if not callable(installed) or name != LOOP_HANDLER_NAME:
        problems.append(
            "loop.add_signal_handler() installed a Python handler named "
            f"{name!r}, expected {LOOP_HANDLER_NAME!r}: {installed!r}"
        )
    unix_events = sys.modules.get("asyncio.unix_events")
    if getattr(unix_events, LOOP_HANDLER_NAME, None) is not installed:
        problems.append(
            f"asyncio.unix_events.{LOOP_HANDLER_NAME} is not the handler "
            "loop.add_signal_handler() installed"
        )
    return problems
