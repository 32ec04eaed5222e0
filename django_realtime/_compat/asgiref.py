"""asgiref internals: handing a context and an event loop to another thread.

:mod:`django_realtime.delivery.sync` runs sync code on its own threads and
promises what ``sync_to_async`` promises. Two steps of that are private in
asgiref:

- ``asgiref.sync._restore_context(context)`` sets the current context's
  variables from ``context``. It is also how ``asgiref.local.Local`` data
  (Django's active translation, time zone and urlconf) follows a call to
  another thread, which a plain copy of the context leaves behind; how it
  does so changed within the window (3.13 re-homes ``Local`` storage), which
  is why it is asgiref's own step that is used, not a copy of it.
- ``SyncToAsync.threadlocal.main_event_loop`` and ``main_event_loop_pid``,
  set in a worker thread, are where ``async_to_sync()`` in that thread finds
  the event loop to run its coroutine on.

Checked: asgiref 3.8.1 and 3.13.0 (:data:`WINDOW`). Outside the window
:data:`SUPPORTED` is false and the sync pool goes through asgiref's public
``SyncToAsync`` with an executor instead (slower, same promises).

:class:`django_realtime.testing.ApplicationCommunicator` extends asgiref's
and tells whether its application has started without starting it
(:func:`communicator_task`). asgiref 3.8 starts the application's task in
the constructor and keeps it in ``future``; 3.13 starts it on the first
use of the ``future`` property and keeps it in ``_future`` until then.
Outside the window :func:`communicator_task` reads the public ``future``,
which starts the application if it had not started.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
from collections.abc import Callable
from typing import Any

import asgiref.sync

from django_realtime._compat import Window

__all__ = [
    "SUPPORTED",
    "WINDOW",
    "adopt_context",
    "bind_event_loop",
    "communicator_task",
    "shape_problems",
]

#: The asgiref versions the two internals were checked against.
WINDOW = Window("asgiref", (3, 8), (3, 14))


def shape_problems() -> list[str]:
    """Return what differs from the internals' expected shape (empty: nothing).

    Looks at the installed asgiref, whatever its version.
    """
    problems = []
    restore = getattr(asgiref.sync, "_restore_context", None)
    if not callable(restore):
        problems.append("asgiref.sync._restore_context is missing")
    else:
        parameters = list(inspect.signature(restore).parameters.values())
        if len(parameters) != 1 or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            problems.append(
                "asgiref.sync._restore_context(context) takes other arguments: "
                f"{inspect.signature(restore)}"
            )
    threadlocal = getattr(asgiref.sync.SyncToAsync, "threadlocal", None)
    if threadlocal is None:
        problems.append("asgiref.sync.SyncToAsync.threadlocal is missing")
    return problems


#: Whether the installed asgiref is in :data:`WINDOW` with the expected shape.
SUPPORTED = WINDOW.covers_installed() and not shape_problems()

_restore: Callable[[contextvars.Context], None] | None = (
    getattr(asgiref.sync, "_restore_context", None) if SUPPORTED else None
)


def _unsupported(what: str) -> RuntimeError:
    return RuntimeError(
        f"{what} relies on asgiref internals checked only for {WINDOW}; this is "
        f"{WINDOW.describe_installed()}. Use the public SyncToAsync instead "
        "(check SUPPORTED first)."
    )


def adopt_context(context: contextvars.Context) -> None:
    """Set the current context's variables (and ``Local`` data) from ``context``.

    Raises:
        RuntimeError: :data:`SUPPORTED` is false.
    """
    if _restore is None:
        raise _unsupported("adopt_context()")
    _restore(context)


def bind_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``async_to_sync()`` in this thread run coroutines on ``loop``.

    Call it in a worker thread before running sync code for ``loop``.

    Raises:
        RuntimeError: :data:`SUPPORTED` is false.
    """
    if _restore is None:
        raise _unsupported("bind_event_loop()")
    local: Any = asgiref.sync.SyncToAsync.threadlocal
    local.main_event_loop = loop
    local.main_event_loop_pid = os.getpid()


# Whether communicator_task() may read asgiref's communicator's attributes.
_COMMUNICATOR_CHECKED = WINDOW.covers_installed()


def communicator_task(communicator: Any) -> asyncio.Future[Any] | None:
    """Return the task of an ``asgiref.testing.ApplicationCommunicator``.

    Returns:
        The task running the communicator's application, or ``None`` when
        it has not started: not used yet, or a constructor that did not
        finish. Outside :data:`WINDOW`, asgiref's public ``future``, which
        starts the application if it had not started.
    """
    if not _COMMUNICATOR_CHECKED:
        task: asyncio.Future[Any] = communicator.future
        return task
    state = vars(communicator)
    if "_future" in state:
        # Started on the first use of the future property.
        started: asyncio.Future[Any] | None = state["_future"]
        return started
    # asgiref 3.8: started by the constructor, if it got that far.
    constructed: asyncio.Future[Any] | None = state.get("future")
    return constructed
