"""System checks for the PostgreSQL layers and store named in the settings.

Every ``CHANNEL_LAYERS`` alias whose ``BACKEND`` is the PostgreSQL channel
layer, and a ``REALTIME["STREAM_STORE"]`` that is the PostgreSQL history
store, has its database checked when ``manage.py check`` (or
``runserver``) runs:

Errors
    ``django_realtime.postgres.E001``
        The ``alias`` is not a key of ``DATABASES``.
    ``django_realtime.postgres.E002``
        ``DATABASES[alias]`` is not a PostgreSQL database.
    ``django_realtime.postgres.E003``
        The database has not got the tables of the layer (or of the store
        and its presence): the app's migrations have not been run on it
        (``manage.py migrate --database alias``).
    ``django_realtime.postgres.E004``
        psycopg 3 is not installed (``pip install
        django-realtime-framework[postgres]``).

Warnings
    ``django_realtime.postgres.W001``
        The database cannot be reached now (it may come up later: the
        layer reconnects by itself).

Settings are read when the checks run, never at import time. This module
imports psycopg only when a check connects.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import DEFAULT_DB_ALIAS, connections

from django_realtime.layers.postgres.schema import (
    LAYER_TABLES,
    PRESENCE_TABLES,
    STORE_TABLES,
)

__all__ = ["check_database", "check_postgres"]

_LAYER = "PostgresChannelLayer"
_STORE = "PostgresHistoryStore"
# Seconds a check waits for the database to answer.
_CONNECT_TIMEOUT = 3


def _configured() -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """Yield (where it is configured, its alias, the tables it needs)."""
    layers: Any = getattr(settings, "CHANNEL_LAYERS", None)
    if isinstance(layers, dict):
        for name, layer in layers.items():
            backend = layer.get("BACKEND") if isinstance(layer, dict) else None
            if isinstance(backend, str) and backend.endswith(_LAYER):
                config = layer.get("CONFIG") or {}
                alias = config.get("alias", DEFAULT_DB_ALIAS)
                yield f"CHANNEL_LAYERS[{name!r}]", alias, LAYER_TABLES
    realtime: Any = getattr(settings, "REALTIME", None)
    store = realtime.get("STREAM_STORE") if isinstance(realtime, dict) else None
    if isinstance(store, dict):
        backend = store.get("BACKEND")
        if isinstance(backend, str) and backend.endswith(_STORE):
            options = store.get("OPTIONS") or {}
            alias = options.get("alias", DEFAULT_DB_ALIAS)
            yield "REALTIME['STREAM_STORE']", alias, STORE_TABLES + PRESENCE_TABLES


def check_database(
    where: str, alias: str, settings_dict: Mapping[str, Any], tables: Sequence[str]
) -> list[CheckMessage]:
    """Check that ``settings_dict`` is a reachable PostgreSQL with ``tables``.

    Args:
        where: The setting that names the database, for the messages.
        alias: Its ``DATABASES`` key.
        settings_dict: ``DATABASES[alias]``.
        tables: The tables that must exist.
    """
    engine = str(settings_dict.get("ENGINE", ""))
    if "postgresql" not in engine and "postgis" not in engine:
        return [
            Error(
                f"{where} uses DATABASES[{alias!r}], whose ENGINE is {engine!r}, "
                "not PostgreSQL.",
                hint="Set 'alias' to a DATABASES key whose ENGINE is "
                "'django.db.backends.postgresql'.",
                id="django_realtime.postgres.E002",
            )
        ]
    if importlib.util.find_spec("psycopg") is None:
        return [
            Error(
                f"{where} needs psycopg 3, which is not installed.",
                hint="pip install 'django-realtime-framework[postgres]'",
                id="django_realtime.postgres.E004",
            )
        ]
    import psycopg

    kwargs: dict[str, Any] = {
        "dbname": settings_dict.get("NAME") or "postgres",
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": str(settings_dict.get("PORT") or "") or None,
        "connect_timeout": _CONNECT_TIMEOUT,
    }
    try:
        with psycopg.connect(
            **{key: value for key, value in kwargs.items() if value is not None}
        ) as connection:
            rows = connection.execute(
                "SELECT name FROM unnest(%s::text[]) AS name "
                "WHERE to_regclass(name) IS NULL",
                (list(tables),),
            ).fetchall()
    except psycopg.Error as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return [
            Warning(
                f"{where} cannot reach its database DATABASES[{alias!r}] now: {first}.",
                hint="Start the database or correct its settings; the layer "
                "reconnects by itself once it is up.",
                id="django_realtime.postgres.W001",
            )
        ]
    missing = [name for (name,) in rows]
    if missing:
        return [
            Error(
                f"{where} uses DATABASES[{alias!r}], which has not got the "
                f"tables {', '.join(missing)}.",
                hint=f"Run 'python manage.py migrate --database {alias}'.",
                id="django_realtime.postgres.E003",
            )
        ]
    return []


@register("realtime")
def check_postgres(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check the databases of the PostgreSQL layers and history store."""
    messages: list[CheckMessage] = []
    seen: set[tuple[str, str]] = set()
    for where, alias, tables in _configured():
        if (where, alias) in seen:
            continue
        seen.add((where, alias))
        databases = connections.settings
        if not isinstance(alias, str) or alias not in databases:
            messages.append(
                Error(
                    f"{where} uses the database alias {alias!r}, which is not "
                    "a key of DATABASES.",
                    hint=f"Set 'alias' to one of {sorted(databases)!r}.",
                    id="django_realtime.postgres.E001",
                )
            )
            continue
        messages.extend(check_database(where, alias, databases[alias], tables))
    return messages
