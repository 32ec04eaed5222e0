"""Django internals: the state of a database connection.

:mod:`django_realtime.delivery.db` decides, from the event loop and without
a query, whether a connection is due to be closed or checked at a
consumer's boundary. Django keeps what that takes in undocumented attributes
of ``BaseDatabaseWrapper``:

- ``close_at``: when the connection outlives ``CONN_MAX_AGE`` (monotonic
  seconds, ``None``: never);
- ``errors_occurred``: a query failed since the last check;
- ``health_check_enabled`` and ``health_check_done``: ``CONN_HEALTH_CHECKS``
  pings the database before the first query after ``health_check_done``
  goes false, as Django makes it at each request's start.

Checked: Django 5.2.20, 6.0.10 and 6.1.3 (:data:`WINDOW`). Outside the window
:data:`SUPPORTED` is false and the boundaries call Django's own
``close_if_unusable_or_obsolete()`` on every open connection outside a
transaction (which asks the database about a connection that had errors
and resets the health check itself): correct, one hop per boundary more.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from django_realtime._compat import Window

__all__ = [
    "CONNECTION_ATTRIBUTES",
    "SUPPORTED",
    "WINDOW",
    "close_at",
    "had_errors",
    "request_health_check",
    "shape_problems",
]

#: The Django versions the connection attributes were checked against.
WINDOW = Window("Django", (5, 2), (6, 2))

#: The attributes read, and the types their values have.
CONNECTION_ATTRIBUTES: dict[str, tuple[type, ...]] = {
    "close_at": (float, type(None)),
    "errors_occurred": (bool,),
    "health_check_enabled": (bool,),
    "health_check_done": (bool,),
}

#: Whether the installed Django is in :data:`WINDOW`.
SUPPORTED = WINDOW.covers_installed()


def shape_problems(connection: BaseDatabaseWrapper) -> list[str]:
    """Return how ``connection`` differs from the expected shape (empty: not)."""
    problems = []
    for name, types in CONNECTION_ATTRIBUTES.items():
        if not hasattr(connection, name):
            problems.append(f"{type(connection).__name__} has no {name!r}")
            continue
        value = getattr(connection, name)
        if not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            problems.append(f"{name!r} is {value!r}, expected {expected}")
    return problems


def close_at(connection: BaseDatabaseWrapper) -> float | None:
    """Return when ``connection`` outlives ``CONN_MAX_AGE`` (``None``: never)."""
    value: float | None = connection.close_at
    return value


def had_errors(connection: BaseDatabaseWrapper) -> bool:
    """Return whether a query failed on ``connection`` since its last check."""
    return bool(connection.errors_occurred)


def request_health_check(connection: BaseDatabaseWrapper) -> None:
    """Make ``CONN_HEALTH_CHECKS`` ping the database before the next query."""
    # django-stubs does not declare the health check attributes.
    if connection.health_check_enabled:  # type: ignore[attr-defined]
        connection.health_check_done = False  # type: ignore[attr-defined]
