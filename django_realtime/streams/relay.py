"""The stream outbox: publications written in a transaction, relayed after it.

A store that keeps its history outside the transaction's database (Redis,
or SQLite in another file) cannot take part in a transaction. With
``REALTIME["STREAM_OUTBOX"]["DATABASES"]`` naming a database,
:func:`~django_realtime.streams.publish` inside ``transaction.atomic()``
on it writes the publication to the outbox table
(:class:`~django_realtime.models.StreamOutbox`) in the transaction instead,
so that it is kept if the transaction commits and gone if it rolls back.
Then:

- once the transaction commits, the publishing process relays its rows to
  the store, in the order they were written, and deletes them;
- a row left behind (the publisher died between its commit and the relay,
  or the store could not be reached) is relayed by a process that serves
  streams: every server process with a connection open, and ``runworker``,
  looks every ``INTERVAL`` seconds for rows older than ``RELAY_AFTER``
  seconds and relays them, in ``id`` order.

Each row is published with its own key
(:meth:`~django_realtime.streams.stores.base.HistoryStore.publish_once`).
A relay that dies after publishing a row but before deleting it leaves the
row behind, and the next relay publishes it again with the same key: the
Redis store remembers the key and publishes nothing the second time, so
each committed publication reaches subscribers exactly once. A store that
remembers no keys (the SQLite store in another file) publishes such a row
again: at least once. On a database with row locks (PostgreSQL), one
process relays a row at a time; on SQLite, two relays may both try and the
key settles it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime
import logging
import weakref
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from django_realtime.conf import DEFAULTS, get_setting
from django_realtime.ops import lifecycle
from django_realtime.streams.registry import get_stream_store
from django_realtime.streams.stores.base import HistoryStore

if TYPE_CHECKING:
    from django_realtime.models import StreamOutbox

__all__ = [
    "OutboxOptions",
    "outbox_options",
    "relay_rows",
    "relay_stale",
    "start_relaying",
    "write",
]

logger = logging.getLogger("django_realtime.streams")

#: Rows relayed in one transaction.
BATCH = 100
# Seconds the relay of rows left behind waits for one publication.
_PUBLISH_TIMEOUT = 30.0

Publish = Callable[[str, str, str], object]


def _outbox() -> type[StreamOutbox]:
    # From the app registry when used: importing django_realtime.streams
    # must not need the settings, nor the apps to be loaded.
    return apps.get_model("django_realtime", "StreamOutbox")


@dataclasses.dataclass(frozen=True)
class OutboxOptions:
    """The stream outbox's settings (``REALTIME["STREAM_OUTBOX"]``)."""

    #: Keys of ``DATABASES`` whose transactions write to the outbox.
    databases: tuple[str, ...]
    #: Seconds after which any process relays a row left behind.
    relay_after: float
    #: Seconds between two looks for rows left behind.
    interval: float


def outbox_options() -> OutboxOptions:
    """Return the outbox settings, with defaults for the keys not given.

    Raises:
        ImproperlyConfigured: the setting is not a dict of known keys with
            values of the right kind.
    """
    given = get_setting("STREAM_OUTBOX")
    if not isinstance(given, dict):
        raise ImproperlyConfigured(
            f"REALTIME['STREAM_OUTBOX'] must be a dict, got {type(given).__name__}."
        )
    defaults: dict[str, Any] = DEFAULTS["STREAM_OUTBOX"]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ImproperlyConfigured(
            f"REALTIME['STREAM_OUTBOX'] has unknown key(s) {unknown}; expected "
            f"some of {sorted(defaults)}."
        )
    options = {**defaults, **given}
    databases = options["DATABASES"]
    if isinstance(databases, str) or not isinstance(databases, Iterable):
        raise ImproperlyConfigured(
            "REALTIME['STREAM_OUTBOX']['DATABASES'] must be a list of DATABASES "
            f"keys, got {databases!r}."
        )
    for alias in databases:
        if alias not in connections:
            raise ImproperlyConfigured(
                f"REALTIME['STREAM_OUTBOX']['DATABASES'] names {alias!r}, which "
                f"is not a key of DATABASES ({sorted(connections)})."
            )
    for name in ("RELAY_AFTER", "INTERVAL"):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ImproperlyConfigured(
                f"REALTIME['STREAM_OUTBOX'][{name!r}] must be a number of seconds "
                f"> 0, got {value!r}."
            )
    return OutboxOptions(
        tuple(databases), float(options["RELAY_AFTER"]), float(options["INTERVAL"])
    )


def write(using: str, stream: str, data: str, store: HistoryStore) -> None:
    """Write a publication to the outbox in ``using``'s open transaction.

    Once the transaction commits, the row is relayed to ``store`` from the
    committing thread; if that fails, the row stays for a later relay
    (a warning says so). If it rolls back, the row is gone.
    """
    row = _outbox().objects.using(using).create(stream=stream, data=data)
    transaction.on_commit(lambda: _relay_committed(using, row.pk, store), using=using)


def _relay_committed(using: str, pk: int, store: HistoryStore) -> None:
    try:
        relay_rows(using, [pk], _publish_from_sync(store))
    except Exception as exc:
        logger.warning(
            "Could not relay outbox row %s of DATABASES[%r] to %r (%s: %s); a "
            "process that serves streams relays it later.",
            pk,
            using,
            store,
            type(exc).__name__,
            exc,
        )


def _publish_from_sync(store: HistoryStore) -> Publish:
    def publish(stream: str, data: str, key: str) -> object:
        return async_to_sync(store.publish_once)(stream, data, key)

    return publish


def relay_rows(using: str, ids: Collection[int], publish: Publish) -> int:
    """Relay the outbox rows ``ids`` of ``using``, in ``id`` order.

    Rows another relay holds (with row locks) or has deleted are skipped.

    Args:
        using: The ``DATABASES`` key.
        ids: The rows.
        publish: Publish ``(stream, data, key)`` to the store, exactly once
            per key where the store can.

    Returns:
        How many rows were relayed.
    """
    rows = _outbox().objects.using(using).filter(pk__in=list(ids))
    return _relay(using, rows, skip_locked=True, publish=publish)


def relay_stale(
    using: str, publish: Publish, older_than: float, now: datetime.datetime
) -> int:
    """Relay up to :data:`BATCH` rows left behind in ``using``, oldest first.

    A row is left behind when it was written over ``older_than`` seconds
    before ``now``. When a row is held by another relay, nothing is relayed
    this time, so rows go out in ``id`` order.

    Returns:
        How many rows were relayed.
    """
    cutoff = now - datetime.timedelta(seconds=older_than)
    rows = _outbox().objects.using(using).filter(created__lt=cutoff)
    return _relay(using, rows, skip_locked=False, publish=publish)


def _relay(
    using: str, rows: QuerySet[StreamOutbox], *, skip_locked: bool, publish: Publish
) -> int:
    features = connections[using].features
    done: list[int] = []
    with transaction.atomic(using=using):
        if features.has_select_for_update_skip_locked and skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        elif features.has_select_for_update_nowait:
            rows = rows.select_for_update(nowait=True)
        fields = rows.order_by("pk").values_list("pk", "stream", "data", "key")
        try:
            # A savepoint, so that a refused lock leaves the transaction usable.
            with transaction.atomic(using=using):
                batch = list(fields[:BATCH])
        except DatabaseError:
            # NOWAIT: another relay holds some of them; it relays them.
            return 0
        try:
            for pk, stream, data, key in batch:
                publish(stream, data, key.hex)
                done.append(pk)
        finally:
            # What was published is deleted even if a later row failed.
            if done:
                _outbox().objects.using(using).filter(pk__in=done).delete()
    return len(done)


class _Relayer:
    """Relay rows left behind, every ``interval`` seconds, on one event loop.

    Database work runs in one thread of its own, so that the relayer keeps
    one connection per database; publications are awaited on the loop,
    where the store keeps its connections.
    """

    def __init__(self, options: OutboxOptions) -> None:
        self.options = options
        self.executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="realtime-outbox"
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        store = get_stream_store()

        def publish(stream: str, data: str, key: str) -> object:
            future = asyncio.run_coroutine_threadsafe(
                store.publish_once(stream, data, key), loop
            )
            # Bounded: a loop that stops meanwhile never answers.
            return future.result(_PUBLISH_TIMEOUT)

        try:
            while True:
                await asyncio.sleep(self.options.interval)
                for using in self.options.databases:
                    await loop.run_in_executor(
                        self.executor, self._look, using, publish
                    )
        finally:
            self.executor.shutdown(wait=False)

    def _look(self, using: str, publish: Publish) -> None:
        try:
            while (
                relay_stale(using, publish, self.options.relay_after, timezone.now())
                == BATCH
            ):
                pass
        except Exception as exc:
            logger.warning(
                "Could not relay the outbox of DATABASES[%r] (%s: %s); trying "
                "again in %g s.",
                using,
                type(exc).__name__,
                exc,
                self.options.interval,
            )
            # Start the next look on a fresh connection.
            connections[using].close()


_relaying: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def start_relaying() -> asyncio.Task[None] | None:
    """Relay rows left behind from the running loop, until it ends.

    Idempotent per event loop; ``None`` when the outbox is off. Server
    processes start it at their first connection, ``runworker`` at its
    start.

    Raises:
        ImproperlyConfigured: ``REALTIME["STREAM_OUTBOX"]`` is not usable.
    """
    loop = asyncio.get_running_loop()
    for other in [other for other in _relaying if other.is_closed()]:
        del _relaying[other]
    task = _relaying.get(loop)
    if task is not None and not task.done():
        return task
    options = outbox_options()
    if not options.databases:
        return None
    relayer = _Relayer(options)
    # A connection's handler may start us: a copy of its context would keep
    # that connection alive for as long as the loop runs.
    task = _relaying[loop] = loop.create_task(
        relayer.run(), name="outbox relay", context=contextvars.Context()
    )
    return task


class _Starter:
    """Start relaying at the first connection of each event loop."""

    def __init__(self) -> None:
        self.loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    def opened(self, connection: Any) -> None:
        loop = asyncio.get_running_loop()
        if loop in self.loops:
            return
        self.loops.add(loop)
        try:
            start_relaying()
        except ImproperlyConfigured as exc:
            logger.error("The stream outbox is off: %s", exc)

    def closed(self, connection: Any) -> None:
        pass


lifecycle.observe(_Starter())
