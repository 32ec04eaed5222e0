"""System checks of the streams' settings kept out of :mod:`django_realtime.checks`.

``django_realtime.E010``: ``REALTIME["STREAM_OUTBOX"]`` is not a dict of
known keys with valid values, or names a database that is not in
``DATABASES``. Registered by the app's ``ready()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from django_realtime.streams.relay import outbox_options

__all__ = ["check_stream_outbox"]


@register("realtime")
def check_stream_outbox(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check ``REALTIME["STREAM_OUTBOX"]`` as the relay will read it."""
    try:
        outbox_options()
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="See the stream outbox in docs/topics/streams.rst.",
                id="django_realtime.E010",
            )
        ]
    return []
