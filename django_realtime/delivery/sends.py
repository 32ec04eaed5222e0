"""Send to connections, channels and groups, after success and after commit.

Every send made through django_realtime follows the same rules, whether it
comes from a consumer handler (``self.send()``, ``self.channel_layer.send()``,
``self.channel_layer.group_send()``) or from ordinary Django code (a view, a
signal receiver, a management command, a worker) through
:func:`send_to_group` and :func:`send_to_channel` or their async twins:

1. ``immediately=True`` sends now, after whatever the current handler still
   holds, so order is kept.
2. Inside ``transaction.atomic()``, the send waits for the outermost
   transaction to commit (``transaction.on_commit``), and is dropped if it
   rolls back, including a rolled-back savepoint. Then rule 3 or 4 applies.
   The transaction is the one open on the ``using`` database, or, by
   default, on the first database of this thread that has one open.
3. Inside a consumer handler, the send is held until the handler returns,
   and dropped if the handler raises.
4. Otherwise it goes out now.

Held sends go out in the order they were made; a send that waited for a
commit takes its place at the moment of the commit. Layer messages carry the
correlation id of the code that sends them
(:mod:`django_realtime.middleware.correlation`).
Transactions only exist in sync code (Django's ORM refuses ``atomic()`` in
async code), so rule 2 applies to sync handlers, to sync Django code, and to
a sync handler's ``async_to_sync(self.channel_layer.group_send)(...)``: the
handler's thread records its database connections in the outbox, and the
send checks their transactions.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from django_realtime.delivery.db import thread_connections
from django_realtime.delivery.outbox import Entry, Outbox, current_outbox
from django_realtime.exceptions import InvalidChannelLayerError
from django_realtime.layers import get_channel_layer
from django_realtime.middleware.correlation import stamp

__all__ = [
    "HeldLayer",
    "asend_to_channel",
    "asend_to_group",
    "deliver",
    "deliver_sync",
    "held_layer",
    "hold",
    "send_entries",
    "send_to_channel",
    "send_to_group",
]

Send = Callable[..., Awaitable[Any]]


def _open_transaction(
    candidates: Iterable[BaseDatabaseWrapper],
) -> BaseDatabaseWrapper | None:
    for connection in candidates:
        if connection.in_atomic_block:
            return connection
    return None


def _thread_transaction(using: str | None) -> BaseDatabaseWrapper | None:
    """Return this thread's connection with an open transaction, if any."""
    if using is not None:
        return _open_transaction((connections[using],))
    return _open_transaction(connections.all(initialized_only=True))


async def send_entries(entries: list[Entry]) -> None:
    """Make each held send, in order."""
    for send, args in entries:
        await send(*args)


def _after_commit(send: Send, args: tuple[Any, ...]) -> None:
    """Apply rules 3 and 4 to a send whose transaction just committed."""
    outbox = current_outbox()
    if outbox is not None:
        outbox.add((send, args))
    else:
        async_to_sync(send)(*args)


def hold(outbox: Outbox | None, entry: Entry, immediately: bool = False) -> bool:
    """Hold ``entry`` if the rules say so with no I/O; return whether it was.

    The common case of :func:`deliver` (a send inside a handler, with no
    transaction to wait for), answered without awaiting anything.
    """
    if outbox is None or immediately or outbox.sync_connections:
        return False
    outbox.add(entry)
    return True


async def deliver(
    outbox: Outbox | None, send: Send, args: tuple[Any, ...], immediately: bool = False
) -> None:
    """Send or hold ``send(*args)`` from async code, by the module's rules."""
    if hold(outbox, (send, args), immediately):
        return
    if outbox is None:
        await send(*args)
    elif immediately:
        await send_entries([*outbox.take(), (send, args)])
    elif (in_transaction := _open_transaction(outbox.sync_connections)) is not None:
        # A sync handler's async_to_sync() call: its thread is blocked in
        # the transaction while we run, so registering on its connection is
        # safe; the callback runs in that thread at commit.
        in_transaction.on_commit(functools.partial(_after_commit, send, args))
    else:
        outbox.add((send, args))


def deliver_sync(
    outbox: Outbox | None,
    send: Send,
    args: tuple[Any, ...],
    immediately: bool = False,
    using: str | None = None,
) -> None:
    """Send or hold ``send(*args)`` from sync code, by the module's rules."""
    in_transaction = None if immediately else _thread_transaction(using)
    if in_transaction is not None:
        in_transaction.on_commit(functools.partial(_after_commit, send, args))
    elif outbox is not None and not immediately:
        outbox.add((send, args))
    else:
        entries = outbox.take() if outbox is not None else []
        entries.append((send, args))
        async_to_sync(send_entries)(entries)


def remember_sync_connections(outbox: Outbox | None) -> None:
    """Record this (sync handler) thread's database connections in ``outbox``."""
    if outbox is not None:
        outbox.sync_connections = thread_connections()


class HeldLayer:
    """A channel layer whose ``send`` and ``group_send`` follow the rules.

    Consumers see their layer through this wrapper as ``self.channel_layer``;
    every other attribute is the layer's own. ``held.layer`` is the layer.
    """

    __slots__ = ("__weakref__", "layer")

    def __init__(self, layer: Any) -> None:
        self.layer = layer

    async def send(
        self, channel: str, message: dict[str, Any], *, immediately: bool = False
    ) -> None:
        """Send ``message`` to ``channel`` (held or after commit, see the module)."""
        await deliver(
            current_outbox(), self.layer.send, (channel, stamp(message)), immediately
        )

    async def group_send(
        self, group: str, message: dict[str, Any], *, immediately: bool = False
    ) -> None:
        """Send ``message`` to ``group`` (held or after commit, see the module)."""
        await deliver(
            current_outbox(),
            self.layer.group_send,
            (group, stamp(message)),
            immediately,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name)

    def __repr__(self) -> str:
        return f"<HeldLayer {self.layer!r}>"


_held: weakref.WeakKeyDictionary[Any, HeldLayer] = weakref.WeakKeyDictionary()


def held_layer(layer: Any) -> HeldLayer:
    """Return the (shared) :class:`HeldLayer` for ``layer``."""
    try:
        return _held[layer]
    except KeyError:
        held = _held[layer] = HeldLayer(layer)
        return held


def _layer(alias: str) -> Any:
    layer = get_channel_layer(alias)
    if layer is None:
        raise InvalidChannelLayerError(
            f"No channel layer {alias!r}: CHANNEL_LAYERS does not configure it."
        )
    return layer


def send_to_group(
    group: str,
    message: dict[str, Any],
    *,
    layer: str = "default",
    using: str | None = None,
    immediately: bool = False,
) -> None:
    """Send ``message`` to ``group`` from sync code, after success and commit.

    Args:
        group: The group name.
        message: A dict with a ``type`` naming the receivers' handler.
        layer: The ``CHANNEL_LAYERS`` alias.
        using: The database alias whose transaction to wait for.
        immediately: Send now, whatever the transaction or handler.
    """
    target = _layer(layer)
    deliver_sync(
        current_outbox(), target.group_send, (group, stamp(message)), immediately, using
    )


async def asend_to_group(
    group: str,
    message: dict[str, Any],
    *,
    layer: str = "default",
    immediately: bool = False,
) -> None:
    """Send ``message`` to ``group`` from async code (held inside a handler)."""
    target = _layer(layer)
    await deliver(
        current_outbox(), target.group_send, (group, stamp(message)), immediately
    )


def send_to_channel(
    channel: str,
    message: dict[str, Any],
    *,
    layer: str = "default",
    using: str | None = None,
    immediately: bool = False,
) -> None:
    """Send ``message`` to ``channel`` from sync code, after success and commit.

    Takes the same arguments as :func:`send_to_group`.
    """
    target = _layer(layer)
    deliver_sync(
        current_outbox(), target.send, (channel, stamp(message)), immediately, using
    )


async def asend_to_channel(
    channel: str,
    message: dict[str, Any],
    *,
    layer: str = "default",
    immediately: bool = False,
) -> None:
    """Send ``message`` to ``channel`` from async code (held inside a handler)."""
    target = _layer(layer)
    await deliver(current_outbox(), target.send, (channel, stamp(message)), immediately)
