"""Send to connections, channels and groups, after success and after commit.

Every send made through django_realtime, whether from a consumer handler
(``self.send()``, ``self.channel_layer.send()``, ``group_send()``) or from
ordinary Django code (a view, a signal receiver, a command, a worker)
through :func:`send_to_group` and :func:`send_to_channel` or their async
twins, goes out when :func:`decide` says: now, when the handler ends, at
the commit, or never. The functions here gather its inputs (is a handler's
outbox open, is a transaction open) and carry out its decision.

Layer messages carry the correlation id of the code that sends them
(:mod:`django_realtime.middleware.correlation`). Transactions only exist in
sync code (Django's ORM refuses ``atomic()`` in async code): a sync
handler's thread records its database connections in the outbox, so that
its ``async_to_sync(self.channel_layer.group_send)(...)``, which runs on
the event loop, waits for that thread's transaction.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Literal, Protocol

from asgiref.sync import async_to_sync
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from django_realtime.delivery.db import thread_connections
from django_realtime.delivery.outbox import Entry, Outbox, current_outbox
from django_realtime.exceptions import InvalidChannelLayerError
from django_realtime.layers import get_channel_layer
from django_realtime.middleware.correlation import stamp

__all__ = [
    "AT_COMMIT",
    "DROP",
    "FAILED",
    "HOLD",
    "IN_TRANSACTION",
    "REFUSED",
    "RETURNED",
    "SEND",
    "STOPPED",
    "Decision",
    "HeldLayer",
    "Outcome",
    "TransactionWriter",
    "asend_to_channel",
    "asend_to_group",
    "decide",
    "deliver",
    "deliver_sync",
    "held_layer",
    "remember_sync_connections",
    "route",
    "send_entries",
    "send_to_channel",
    "send_to_group",
    "settle",
]

logger = logging.getLogger(__name__)

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


# What becomes of a send: the decisions of decide().
#: Send now, after whatever the handler still holds.
SEND: Final = "send"
#: Hold it in the handler's outbox until the handler ends.
HOLD: Final = "hold"
#: Wait for the transaction's commit, then decide again.
AT_COMMIT: Final = "at commit"
#: Never send it.
DROP: Final = "drop"
#: Write it in the open transaction now: it commits or rolls back with it.
IN_TRANSACTION: Final = "in transaction"

Decision = Literal["send", "hold", "at commit", "drop", "in transaction"]


class TransactionWriter(Protocol):
    """A send that can be written in a database transaction (a publication).

    Stream publications are data: where the store, or the stream outbox,
    lives in the transaction's database, they are written in the
    transaction instead of waiting for its commit (:func:`decide`, rule 3).
    """

    def writes_in(self, using: str) -> bool:
        """Return whether the send can be written in a transaction of ``using``."""

    def write_in(self, using: str) -> None:
        """Write the send in the open transaction of ``using``."""


# How a handler ended: the outcomes decide() takes for what it held.
#: The handler returned.
RETURNED: Final = "returned"
#: The handler raised :exc:`~django_realtime.exceptions.StopConsumer`.
STOPPED: Final = "stopped"
#: The handler raised any other exception (or was cancelled).
FAILED: Final = "failed"
#: The handler refused the handshake or a frame (``DenyConnection``, a frame
#: the consumer cannot take); the refusal itself goes out at once.
REFUSED: Final = "refused"

Outcome = Literal["returned", "stopped", "failed", "refused"]


def decide(
    held: bool,
    immediately: bool = False,
    in_transaction: bool = False,
    outcome: Outcome | None = None,
    writable: bool = False,
) -> Decision:
    """Return when a send goes out: the one rule of delivery.

    The first rule that applies decides:

    1. A send a handler held, once the handler has ended: it goes out
       (:data:`SEND`) if the handler returned or raised ``StopConsumer``,
       and is dropped (:data:`DROP`) if it raised anything else or refused
       the handshake or a frame. So a client never sees half of a failed
       operation.
    2. ``immediately=True``: :data:`SEND` now, after whatever the handler
       still holds, so the order is kept.
    3. Inside ``transaction.atomic()``: :data:`AT_COMMIT`. The send waits
       for the outermost transaction to commit and is dropped if it rolls
       back (a rolled-back savepoint included); at the commit, rule 4 or 5
       decides. The transaction is the one open on the ``using`` database,
       or by default on the first database of the thread that has one open
       (for a send made on the event loop on behalf of a sync handler, that
       handler's thread).

       A stream publication that can be written in that transaction (its
       store lives in the transaction's database, or the stream outbox is
       on for it) is written now instead (:data:`IN_TRANSACTION`): it is
       data, kept if the transaction commits and gone if it rolls back,
       like the rows written beside it. It is published at the commit,
       whether or not a handler is running, and a handler that raises
       after the commit does not take it back (it does not take back the
       rows either).
    4. Inside a consumer handler: :data:`HOLD` until the handler ends (then
       rule 1). A send that waited for a commit takes its place in the
       handler's order at the moment of the commit.
    5. Otherwise: :data:`SEND` now.

    A consumer class with ``defer_sends = False`` (HTTP consumers) opens no
    outbox: its handlers' sends follow rules 2, 3 and 5.

    Args:
        held: A handler's outbox is open for the send: the send is made
            inside a consumer handler, or was held by one (rule 1).
        immediately: The caller asked for the send to go out now.
        in_transaction: A database transaction is open for the send.
        outcome: ``None`` for a send being made; for the sends a handler
            held, how the handler ended: :data:`RETURNED`, :data:`STOPPED`,
            :data:`FAILED` or :data:`REFUSED`.
        writable: The send can be written in the open transaction.

    Returns:
        :data:`SEND`, :data:`HOLD`, :data:`AT_COMMIT`, :data:`DROP` or
        :data:`IN_TRANSACTION`.
    """
    if outcome is not None:
        return SEND if outcome in (RETURNED, STOPPED) else DROP
    if immediately:
        return SEND
    if in_transaction:
        return IN_TRANSACTION if writable else AT_COMMIT
    return HOLD if held else SEND


async def send_entries(entries: list[Entry]) -> None:
    """Make each send in ``entries``, in order."""
    for send, args in entries:
        await send(*args)


def _send_now_sync(outbox: Outbox | None, send: Send, args: tuple[Any, ...]) -> None:
    """Send ``send(*args)`` after what ``outbox`` holds, from sync code."""
    entries = outbox.take() if outbox is not None else []
    entries.append((send, args))
    async_to_sync(send_entries)(entries)


def _after_commit(send: Send, args: tuple[Any, ...]) -> None:
    """Decide again about a send whose transaction has just committed."""
    outbox = current_outbox()
    if outbox is not None and decide(True) == HOLD:
        outbox.add((send, args))
    else:
        _send_now_sync(outbox, send, args)


def route(
    outbox: Outbox | None, send: Send, args: tuple[Any, ...], immediately: bool = False
) -> Awaitable[None] | None:
    """Carry out :func:`decide` for a send made from async code.

    Hold the send or register it for the commit and return ``None``, or
    return the awaitable that sends it now (after what ``outbox`` holds).
    """
    transaction = None
    if outbox is not None and outbox.sync_connections and not immediately:
        # A sync handler's async_to_sync() call: its thread is blocked in
        # the transaction while we run, so registering on its connection is
        # safe; the callback runs in that thread at the commit.
        transaction = _open_transaction(outbox.sync_connections)
    decision = decide(outbox is not None, immediately, transaction is not None)
    if decision == HOLD and outbox is not None:
        outbox.messages.append((send, args))  # Outbox.add(), without a frame
        return None
    if decision == AT_COMMIT and transaction is not None:
        transaction.on_commit(functools.partial(_after_commit, send, args))
        return None
    if outbox is not None and outbox.messages:
        return send_entries([*outbox.take(), (send, args)])
    return send(*args)


async def deliver(
    outbox: Outbox | None, send: Send, args: tuple[Any, ...], immediately: bool = False
) -> None:
    """Send or hold ``send(*args)`` from async code, as :func:`decide` says."""
    if (sending := route(outbox, send, args, immediately)) is not None:
        await sending


def deliver_sync(
    outbox: Outbox | None,
    send: Send,
    args: tuple[Any, ...],
    immediately: bool = False,
    using: str | None = None,
    writer: TransactionWriter | None = None,
) -> None:
    """Send or hold ``send(*args)`` from sync code, as :func:`decide` says.

    ``writer`` writes the send in the open transaction instead, where it can.
    """
    transaction = None if immediately else _thread_transaction(using)
    writable = (
        transaction is not None
        and writer is not None
        and writer.writes_in(transaction.alias)
    )
    decision = decide(
        outbox is not None, immediately, transaction is not None, writable=writable
    )
    if decision == IN_TRANSACTION and writer is not None and transaction is not None:
        writer.write_in(transaction.alias)
    elif decision == AT_COMMIT and transaction is not None:
        transaction.on_commit(functools.partial(_after_commit, send, args))
    elif decision == HOLD and outbox is not None:
        outbox.add((send, args))
    else:
        _send_now_sync(outbox, send, args)


def settle(outbox: Outbox, outcome: Outcome, since: int | None = None) -> list[Entry]:
    """Carry out :func:`decide` for what a handler held, once it has ended.

    Args:
        outbox: The handler's outbox.
        outcome: How the handler ended.
        since: ``None`` when the handler that opened ``outbox`` ended: the
            outbox closes. A position in ``outbox.messages`` when a part of
            the handler ended (a stream request handler, say): what that
            part held from there on is dropped if the rule says so, and
            otherwise stays held for the handler.

    Returns:
        What to send now, in order (nothing when the rule drops it or
        ``since`` is given).
    """
    if decide(True, False, False, outcome) == SEND:
        return [] if since is not None else outbox.close()
    if since is None:
        dropped = outbox.discard()
    else:
        dropped = len(outbox.messages[since:])
        del outbox.messages[since:]
    if dropped:
        logger.debug(
            "%s: the handler %s; dropped %d held send(s).",
            type(outbox.owner).__name__,
            outcome,
            dropped,
        )
    return []


def remember_sync_connections(outbox: Outbox | None) -> None:
    """Record this (sync handler) thread's database connections in ``outbox``."""
    if outbox is not None:
        outbox.sync_connections = thread_connections()


class HeldLayer:
    """A channel layer whose ``send`` and ``group_send`` follow :func:`decide`.

    Consumers see their layer through this wrapper as ``self.channel_layer``;
    every other attribute is the layer's own. ``held.layer`` is the layer.
    """

    __slots__ = ("__weakref__", "layer")

    def __init__(self, layer: Any) -> None:
        self.layer = layer

    async def send(
        self, channel: str, message: dict[str, Any], *, immediately: bool = False
    ) -> None:
        """Send ``message`` to ``channel`` when :func:`decide` says."""
        sending = route(
            current_outbox(), self.layer.send, (channel, stamp(message)), immediately
        )
        if sending is not None:
            await sending

    async def group_send(
        self, group: str, message: dict[str, Any], *, immediately: bool = False
    ) -> None:
        """Send ``message`` to ``group`` when :func:`decide` says."""
        sending = route(
            current_outbox(),
            self.layer.group_send,
            (group, stamp(message)),
            immediately,
        )
        if sending is not None:
            await sending

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
