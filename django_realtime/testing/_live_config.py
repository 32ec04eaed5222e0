"""What the live server's process is told: the application, databases, settings.

:class:`~django_realtime.testing.live_server.LiveServer` passes these to
``django_realtime.testing._serve`` as a JSON object in the
:data:`CONFIG_ENV` environment variable, and its settings module in
``DJANGO_SETTINGS_MODULE``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django.db.utils import ConnectionHandler

__all__ = [
    "CONFIG_ENV",
    "application_path",
    "checked_options",
    "settings_module",
    "shared_database_names",
]

#: The environment variable holding the JSON configuration.
CONFIG_ENV = "DJANGO_REALTIME_LIVE_SERVER"
# The Server arguments the live server sets itself.
_RESERVED_OPTIONS = frozenset(
    {"application", "endpoints", "action_logger", "ready_callable"}
)


def application_path(application: str | None = None) -> str:
    """Return ``application``, or ``ASGI_APPLICATION``, as daphne's ``module:attr``.

    Both ``"project.asgi:application"`` and Django's dotted
    ``"project.asgi.application"`` are accepted.

    Raises:
        ImproperlyConfigured: No application was given and
            ``ASGI_APPLICATION`` is not set, or the path has no attribute part.
    """
    if application is None:
        from django.conf import settings

        application = getattr(settings, "ASGI_APPLICATION", None)
        if not application:
            raise ImproperlyConfigured(
                "The live server needs an ASGI application: pass "
                "application='project.asgi:application' or set ASGI_APPLICATION."
            )
    if ":" in application:
        return application
    module, _, attribute = application.rpartition(".")
    if not module:
        raise ImproperlyConfigured(
            "Expected the ASGI application as 'module:attribute' or "
            f"'module.attribute', got {application!r}."
        )
    return f"{module}:{attribute}"


def _is_in_memory(name: object) -> bool:
    text = str(name)
    return text == ":memory:" or "mode=memory" in text


def shared_database_names(
    aliases: Iterable[str] | None = None,
    *,
    connections: ConnectionHandler | None = None,
) -> dict[str, str]:
    """Return the current ``NAME`` of each database alias, for the server.

    In a test run these are the test databases' names.

    Args:
        aliases: The aliases to share; all configured ones by default.
        connections: Where to look; ``django.db.connections`` by default.

    Raises:
        ImproperlyConfigured: One of them is an in-memory SQLite database,
            which another process cannot open.
    """
    if connections is None:
        from django.db import connections as default_connections

        connections = default_connections
    names = {}
    for alias in list(connections) if aliases is None else aliases:
        connection = connections[alias]
        name = connection.settings_dict.get("NAME")
        if not name:
            continue
        if connection.vendor == "sqlite" and _is_in_memory(name):
            raise ImproperlyConfigured(
                "The live server runs in another process, which cannot open the "
                f"in-memory SQLite database of {alias!r}. Give the test database "
                f"a file: DATABASES[{alias!r}]['TEST'] = {{'NAME': 'test.sqlite3'}}, "
                "or use PostgreSQL."
            )
        names[alias] = str(name)
    return names


def checked_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``options`` for daphne's ``Server`` as a dict, or raise ValueError."""
    taken = sorted(_RESERVED_OPTIONS.intersection(options))
    if taken:
        raise ValueError(
            "Expected server_options without the arguments the live server "
            f"sets ({', '.join(sorted(_RESERVED_OPTIONS))}), got {taken}."
        )
    try:
        json.dumps(dict(options))
    except (TypeError, ValueError) as error:
        raise ValueError(
            "Expected server_options whose values JSON can carry to the "
            f"server's process, got {options!r}: {error}"
        ) from error
    return dict(options)


def settings_module() -> str:
    """Return the settings module the server's process is to load.

    Raises:
        ImproperlyConfigured: Settings were made with ``settings.configure()``.
    """
    from django.conf import settings

    module = getattr(settings, "SETTINGS_MODULE", None) or os.environ.get(
        "DJANGO_SETTINGS_MODULE"
    )
    if not module:
        raise ImproperlyConfigured(
            "The live server loads settings from a module in its own process; "
            "settings made with settings.configure() cannot be passed on. Set "
            "DJANGO_SETTINGS_MODULE."
        )
    return str(module)
