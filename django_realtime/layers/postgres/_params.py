"""Connection settings for the layer's own connections, read from DATABASES.

The layer and the store open psycopg connections of their own with the
settings of a ``DATABASES`` alias; they never use Django's connection
objects, which belong to one thread each.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections

__all__ = ["connection_kwargs", "describe"]

# OPTIONS that Django understands and psycopg does not.
_DJANGO_ONLY = {
    "pool",
    "server_side_binding",
    "isolation_level",
    "assume_role",
    "cursor_factory",
    "context",
    "prepare_threshold",
}


def _settings_of(alias: str) -> dict[str, Any]:
    try:
        settings_dict: dict[str, Any] = connections.settings[alias]
    except KeyError:
        raise ImproperlyConfigured(
            f"Expected {alias!r} to be a key of DATABASES, got "
            f"{sorted(connections.settings)!r}."
        ) from None
    engine = str(settings_dict.get("ENGINE", ""))
    if "postgresql" not in engine and "postgis" not in engine:
        raise ImproperlyConfigured(
            f"Expected DATABASES[{alias!r}] to be a PostgreSQL database, got "
            f"ENGINE {engine!r}."
        )
    return settings_dict


def connection_kwargs(alias: str) -> dict[str, Any]:
    """Return psycopg ``connect()`` keyword arguments for ``alias``.

    Read at each connection, so a test database made after the layer was
    built is the one connected to.

    Raises:
        ImproperlyConfigured: ``alias`` is not a PostgreSQL database of
            ``DATABASES``.
    """
    settings_dict = _settings_of(alias)
    options = dict(settings_dict.get("OPTIONS") or {})
    kwargs: dict[str, Any] = {
        key: value for key, value in options.items() if key not in _DJANGO_ONLY
    }
    name = settings_dict.get("NAME")
    kwargs["dbname"] = name or "postgres"
    for key, option in (
        ("USER", "user"),
        ("PASSWORD", "password"),
        ("HOST", "host"),
        ("PORT", "port"),
    ):
        if settings_dict.get(key):
            kwargs[option] = str(settings_dict[key])
    kwargs.setdefault("connect_timeout", 5)
    kwargs["client_encoding"] = "UTF8"
    return kwargs


def describe(alias: str) -> str:
    """Return ``alias`` with its host and database, for messages."""
    try:
        settings_dict = _settings_of(alias)
    except ImproperlyConfigured:
        return f"DATABASES[{alias!r}]"
    host = settings_dict.get("HOST") or "localhost"
    port = settings_dict.get("PORT") or 5432
    return (
        f"DATABASES[{alias!r}] (database {settings_dict.get('NAME')!r} on "
        f"{host}:{port})"
    )
