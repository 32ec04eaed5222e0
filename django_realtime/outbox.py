"""Hold what a handler sends until the handler has finished.

A consumer opens an :class:`Outbox` around every handler call. Messages the
handler sends to its own connection are appended to it instead of going out,
and the consumer drains it once the handler returns. If the handler raises,
the outbox is discarded and nothing it sent reaches the client, so a client
never sees half of a failed operation.

The outbox in force is carried by a context variable. Context is copied into
the thread that runs a sync handler, so ``self.send()`` in a sync handler
reaches the same outbox without any hop back to the event loop. A task that a
handler starts also inherits the context; once the handler has finished the
outbox is closed, and a send from such a task goes out at once rather than
into a buffer nobody will drain.

This module holds no I/O: it is a list with rules, testable without a loop.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

__all__ = ["Outbox", "activate", "current_outbox", "deactivate"]


class Outbox:
    """Collect the messages one handler call of one consumer sends."""

    __slots__ = ("is_open", "messages", "owner")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.messages: list[Any] = []
        self.is_open = True

    def accepts(self, owner: object) -> bool:
        """Return whether a send by ``owner`` is to be held in this outbox."""
        return self.is_open and self.owner is owner

    def add(self, message: Any) -> None:
        """Hold ``message`` until the handler finishes."""
        self.messages.append(message)

    def take(self) -> list[Any]:
        """Return the held messages in send order and empty the outbox."""
        messages, self.messages = self.messages, []
        return messages

    def close(self) -> list[Any]:
        """Close the outbox and return what it still held."""
        self.is_open = False
        return self.take()

    def discard(self) -> int:
        """Close the outbox, drop what it held, and return how many."""
        return len(self.close())


_current: ContextVar[Outbox | None] = ContextVar("django_realtime_outbox", default=None)


def current_outbox(owner: object) -> Outbox | None:
    """Return the open outbox of ``owner`` in this context, if there is one."""
    outbox = _current.get()
    if outbox is not None and outbox.accepts(owner):
        return outbox
    return None


def activate(outbox: Outbox) -> Token[Outbox | None]:
    """Make ``outbox`` the one in force in this context; return a reset token."""
    return _current.set(outbox)


def deactivate(token: Token[Outbox | None]) -> None:
    """Restore the outbox that was in force before :func:`activate`."""
    _current.reset(token)
