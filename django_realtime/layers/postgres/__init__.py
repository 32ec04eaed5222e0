"""A channel layer in PostgreSQL tables, woken by LISTEN/NOTIFY.

``CHANNEL_LAYERS = {"default": {"BACKEND":
"django_realtime.layers.postgres.PostgresChannelLayer", "CONFIG": {"alias":
"default"}}}``; the options are documented on :class:`PostgresChannelLayer`.

The layer needs psycopg 3 (``pip install django-realtime-framework[postgres]``); it is
imported when the layer is first named, so that the package's checks and
migration load without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_realtime.layers.postgres.layer import PostgresChannelLayer

__all__ = ["PostgresChannelLayer"]


def __getattr__(name: str) -> Any:
    if name == "PostgresChannelLayer":
        from django_realtime.layers.postgres.layer import PostgresChannelLayer

        return PostgresChannelLayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
