"""``manage.py realtime publish``: publish to a stream, print where it landed.

:func:`publish_now` publishes with
:func:`~django_realtime.streams.publishing.publish` (``immediately=True``,
so no transaction holds it) to the configured history store, then finds
the publication in the stream's history to give its position: the first
one after the stream's newest position before the call with the same
payload.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import CommandError

from django_realtime.ops.cli.arguments import USAGE_ERROR
from django_realtime.streams.positions import Position, encode_data
from django_realtime.streams.publishing import publish
from django_realtime.streams.registry import get_stream_store

__all__ = ["publish_now"]


def publish_now(stream: str, data: Any) -> Position | None:
    """Publish ``data`` to ``stream`` now; return the publication's position.

    Args:
        stream: The stream's name (already checked).
        data: The payload, a JSON value.

    Returns:
        The position, or ``None`` when the history no longer holds the
        publication (the stream was flushed, or its window moved past it,
        before it could be read back).

    Raises:
        CommandError: the payload is over the stream's ``max_bytes`` (exit
            code :data:`~.arguments.USAGE_ERROR`).
    """
    store = get_stream_store()
    before = async_to_sync(store.read)(stream)
    try:
        publish(stream, data, immediately=True)
    except ValueError as exc:
        raise CommandError(str(exc), returncode=USAGE_ERROR) from None
    text = encode_data(data)
    after = async_to_sync(store.read)(stream, before.position)
    for publication in after.publications:
        if publication.data == text:
            return publication.position
    return None
