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

An entry is a pair ``(send, args)``: an async callable and its arguments
(the connection's ASGI ``send``, a layer's ``send`` or ``group_send``), so
one outbox keeps the order of everything a handler sent, wherever it goes.

This module holds no I/O: it is a list, testable without a loop. Whether a
send is held, and whether what is held goes out, is decided by
:func:`django_realtime.delivery.sends.decide`.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar, Token
from typing import Any

Entry = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]

__all__ = ["Outbox", "activate", "context_outbox", "current_outbox", "deactivate"]


class Outbox:
    """Collect the messages one handler call of one consumer sends."""

    __slots__ = ("_owner", "correlation", "is_open", "messages", "sync_connections")

    def __init__(self, owner: object, correlation: str | int | None = None) -> None:
        # Weak: the context that carries an outbox can outlive its consumer
        # (a server's timer keeps a copy of the context it was made in).
        self._owner: Callable[[], object | None]
        try:
            self._owner = weakref.ref(owner)
        except TypeError:  # a str or int names the owner: nothing to free
            self._owner = functools.partial(_same, owner)
        # What names the handled message for its correlation id, which the
        # owner builds only if asked: the id itself, or the number of a
        # frame on the owner's connection.
        self.correlation = correlation
        self.messages: list[Entry] = []
        self.is_open = True
        # The database connections of the thread running a sync handler,
        # set by that thread: a send made from the event loop on the
        # handler's behalf (async_to_sync) checks their transactions.
        self.sync_connections: Collection[Any] = ()

    @property
    def owner(self) -> object | None:
        """The consumer whose handler call this outbox belongs to (if alive)."""
        return self._owner()

    def accepts(self, owner: object | None) -> bool:
        """Return whether a send by ``owner`` (``None``: anyone) is to be held."""
        return self.is_open and (owner is None or self._owner() is owner)

    def add(self, entry: Entry) -> None:
        """Hold ``entry`` until the handler ends."""
        self.messages.append(entry)

    def take(self) -> list[Entry]:
        """Return the held messages in send order and empty the outbox."""
        messages, self.messages = self.messages, []
        return messages

    def close(self) -> list[Entry]:
        """Close the outbox and return what it still held."""
        self.is_open = False
        messages, self.messages = self.messages, []
        return messages

    def discard(self) -> int:
        """Close the outbox, drop what it held, and return how many."""
        return len(self.close())


def _same(owner: object) -> object:
    return owner


_current: ContextVar[Outbox | None] = ContextVar("django_realtime_outbox", default=None)


def current_outbox(owner: object | None = None) -> Outbox | None:
    """Return the open outbox in this context, if there is one.

    With ``owner``, only an outbox opened by that consumer counts: a
    consumer's own connection sends are held only by its own handlers.
    """
    outbox = _current.get()
    # Outbox.accepts(), inlined: this runs for every send.
    if (
        outbox is not None
        and outbox.is_open
        and (owner is None or outbox._owner() is owner)
    ):
        return outbox
    return None


#: ``context_outbox()``: return the outbox of the handler call this context
#: belongs to, open or closed (a task a handler started keeps it after the
#: handler has ended), or ``None``.
context_outbox: Callable[[], Outbox | None] = _current.get

# The context variable's own methods, not functions around them: a
# consumer calls both for every message, and these add no frame.

#: ``activate(outbox)``: make ``outbox`` the one in force in this context;
#: return a token for :func:`deactivate`.
activate: Callable[[Outbox | None], Token[Outbox | None]] = _current.set

#: ``deactivate(token)``: restore the outbox that was in force before
#: :func:`activate` returned ``token``.
deactivate: Callable[[Token[Outbox | None]], None] = _current.reset
