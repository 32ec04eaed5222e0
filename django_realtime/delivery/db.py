"""Keep database connections healthy around consumer handlers.

Django closes connections that are unusable or older than ``CONN_MAX_AGE``
when a request starts and when it finishes. A WebSocket connection is one
request that lasts for hours, so consumers do the same at their own
boundaries: before ``connect()``, before each message's handler, and after
``disconnect()``. Sends are never wrapped.

A connection inside an atomic block is never closed. Closing it would break
the transaction; test transactions in particular (``TestCase``,
pytest-django's ``db`` fixture) must survive a consumer's disconnect, which
Channels gets wrong (channels#1091, #2118).

Where connections live decides how they are checked:

- Sync handlers run on the sync pool; each pool thread has its own
  connections, checked in that thread just before and just after the
  handler, inside the same hop. No extra thread switch.
- Async handlers reach the database through Django's async ORM, which runs
  queries in the one thread asgiref keeps for thread-sensitive code. Checking
  that thread costs a hop, so :func:`aclose_old_connections` first looks,
  from the event loop, at the connections it saw being opened there, and hops
  only if one of them is due to close. A consumer that never touches the
  database pays one set lookup per message.

With ``CONN_HEALTH_CHECKS``, each boundary also marks connections for a
health check on their next use, as Django does per request, so a connection
the database server dropped between two messages is replaced transparently.

Deciding without a query reads connection attributes Django does not
document (:mod:`django_realtime._compat.django`); with a Django outside the
versions they were checked against, every open connection outside a
transaction is handed to Django's own ``close_if_unusable_or_obsolete()``
at each boundary instead.

``REALTIME["CLOSE_OLD_CONNECTIONS"] = False`` turns all of this off.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from django_realtime._compat import django as _django
from django_realtime.delivery.sync import is_pool_thread

__all__ = [
    "CHECK",
    "CLOSE",
    "KEEP",
    "aclose_old_connections",
    "boundary_action",
    "call_with_fresh_connections",
    "close_old_connections",
    "has_loop_connections",
    "is_due_to_close",
    "thread_connections",
    "track_connection",
]

T = TypeVar("T")

# Thread ident -> connections opened in that thread and maybe still open.
_opened: dict[int, weakref.WeakSet[BaseDatabaseWrapper]] = {}
# Threads outside the sync pool that have opened a connection (a superset
# of those that still hold one): while empty, no boundary has work to do.
# A tuple, replaced under the lock: has_loop_connections() iterates it while
# other threads may add to it.
_outside_idents: tuple[int, ...] = ()
_outside_lock = threading.Lock()
# Connections still due after a hop: they live in a thread the hop does not
# reach (the main thread of a test, say); their own thread closes them.
_unreachable: weakref.WeakSet[BaseDatabaseWrapper] = weakref.WeakSet()


def track_connection(
    sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any
) -> None:
    """Record a new connection (a ``connection_created`` signal receiver)."""
    global _outside_idents
    ident = threading.get_ident()
    if not is_pool_thread(ident) and ident not in _outside_idents:
        with _outside_lock:
            if ident not in _outside_idents:
                _outside_idents = (*_outside_idents, ident)
    try:
        _opened[ident].add(connection)
    except KeyError:
        _opened[ident] = weakref.WeakSet([connection])


KEEP, CLOSE, CHECK = "keep", "close", "check"

# Whether Django's connection attributes are read (a Django in the window).
_supported = _django.SUPPORTED


def boundary_action(connection: BaseDatabaseWrapper, now: float) -> str:
    """Decide what Django would do with ``connection`` at a request boundary.

    Returns:
        ``KEEP`` (closed, inside an atomic block, or healthy and young),
        ``CLOSE`` (outlived ``CONN_MAX_AGE``, or left with a non-default
        autocommit setting) or ``CHECK`` (had an error since its last commit:
        ping it, close it if it does not answer).

    Reads attributes only, so deciding never touches the database. With a
    Django whose attributes were not checked, an open connection outside a
    transaction is always ``CHECK``: Django's own method decides.
    """
    if connection.connection is None or connection.in_atomic_block:
        return KEEP
    if not _supported:
        return CHECK
    close_at = _django.close_at(connection)
    if connection.autocommit != connection.settings_dict["AUTOCOMMIT"] or (
        close_at is not None and now >= close_at
    ):
        return CLOSE
    if _django.had_errors(connection):
        return CHECK
    return KEEP


def is_due_to_close(connection: BaseDatabaseWrapper, now: float) -> bool:
    """Return whether ``connection`` is to be closed or checked at a boundary."""
    return boundary_action(connection, now) != KEEP


def close_old_connections() -> None:
    """Close this thread's connections that are unusable or past ``CONN_MAX_AGE``.

    Like :func:`django.db.close_old_connections`, except that a connection
    inside an atomic block is left alone, so test transactions survive, and
    that a connection past its age is closed without asking the database
    anything first. Call it from sync code; from async code, use
    :func:`aclose_old_connections`.
    """
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        action = boundary_action(connection, now)
        if action == CLOSE:
            connection.close()
        elif action == CHECK:
            # Django's own method pings the database and closes on failure.
            connection.close_if_unusable_or_obsolete()
        elif connection.connection is not None and not connection.in_atomic_block:
            _reset_health_check(connection)


def _reset_health_check(connection: BaseDatabaseWrapper) -> None:
    # Outside the checked versions, close_if_unusable_or_obsolete() does it.
    if _supported:
        _django.request_health_check(connection)


def thread_connections() -> Collection[BaseDatabaseWrapper]:
    """Return the connections opened in this thread (a live, weak view).

    Any connection that can be open or inside a transaction here is in it,
    so it answers both questions without Django's per-thread lookups.
    """
    return _opened.get(threading.get_ident(), ())


def _outside_pool() -> list[BaseDatabaseWrapper]:
    return [
        connection
        for ident, opened in _opened.items()
        if not is_pool_thread(ident)
        for connection in opened
    ]


def has_loop_connections() -> bool:
    """Return whether a thread outside the sync pool has opened a connection.

    Only those can be due at a consumer's boundary: when this is false,
    :func:`aclose_old_connections` has nothing to do and need not be awaited.
    """
    # Every consumer boundary asks: look only at the threads that can answer
    # yes (usually none, or the one thread of the async ORM).
    for ident in _outside_idents:
        if not is_pool_thread(ident) and _opened.get(ident):
            return True
    return False


async def aclose_old_connections() -> None:
    """Close the async ORM's connections that are unusable or past ``CONN_MAX_AGE``.

    Consumers call this at their boundaries. Call it yourself in
    server-initiated code that runs for a long time between client messages
    and uses the async ORM: a periodic task started by a consumer, a
    background worker loop, a streaming HTTP response.
    """
    candidates = _outside_pool()
    if not candidates:
        return
    now = time.monotonic()
    due = False
    for connection in candidates:
        if connection.connection is not None and not connection.in_atomic_block:
            # Never inside a transaction: the next query there would ping,
            # and maybe close, the connection mid-transaction.
            _reset_health_check(connection)
        if connection not in _unreachable and is_due_to_close(connection, now):
            due = True
    if not due:
        return
    # Django's async ORM runs queries in asgiref's thread-sensitive thread;
    # so does this, and closes what is due there.
    await sync_to_async(close_old_connections)()
    if not _supported:
        # Every open connection stays "due": nothing tells those the hop
        # reached from the others, so each boundary hops.
        return
    now = time.monotonic()
    _unreachable.clear()
    for connection in candidates:
        if is_due_to_close(connection, now):
            _unreachable.add(connection)


def call_with_fresh_connections(
    fn: Callable[..., T], /, *args: Any, **kwargs: Any
) -> T:
    """Call ``fn`` between two :func:`close_old_connections`, in this thread.

    The sync pool runs each sync handler through this, so the handler's
    thread starts with healthy connections and does not keep an obsolete one
    open afterwards (``CONN_MAX_AGE = 0`` closes it when the handler is done,
    as Django does at the end of a request).
    """
    if any(connection.connection is not None for connection in thread_connections()):
        close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        if any(c.connection is not None for c in thread_connections()):
            close_old_connections()


# Connected here rather than in AppConfig.ready() so that consumers track
# connections even in projects that use them without the app installed.
connection_created.connect(track_connection, dispatch_uid="django_realtime.delivery.db")
