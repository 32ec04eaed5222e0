"""Publish to streams from consumers and from ordinary Django code.

:func:`publish` and :func:`apublish` follow the rules of every send
(:mod:`django_realtime.delivery.sends`): inside a consumer handler the
publication is held until the handler returns and dropped if it raises;
inside ``transaction.atomic()`` it waits for the commit and is dropped on
rollback; ``immediately=True`` publishes now. The payload is checked and
encoded at the call, so a bad payload fails where it was given, not later
at the commit.
"""

from __future__ import annotations

from typing import Any

from django_realtime.delivery.outbox import current_outbox
from django_realtime.delivery.sends import deliver, deliver_sync
from django_realtime.streams.positions import encode_data, validate_stream_name
from django_realtime.streams.registry import get_stream_store

__all__ = ["apublish", "publish"]


def _prepare(stream: str, data: Any) -> tuple[Any, str]:
    validate_stream_name(stream)
    text = encode_data(data)
    store = get_stream_store()
    store.policies(stream).check_size(stream, text)
    return store, text


def publish(
    stream: str, data: Any, *, using: str | None = None, immediately: bool = False
) -> None:
    """Publish ``data`` to ``stream`` from sync code, after success and commit.

    Args:
        stream: The stream's name.
        data: Any JSON-serialisable value; an object with a ``"type"`` lets
            clients dispatch it by type.
        using: The database alias whose transaction to wait for.
        immediately: Publish now, whatever the transaction or handler.

    Raises:
        ValueError: the name is invalid or the payload is over the stream's
            ``max_bytes``.
        TypeError: ``data`` is not JSON-serialisable.
    """
    store, text = _prepare(stream, data)
    deliver_sync(current_outbox(), store.publish, (stream, text), immediately, using)


async def apublish(stream: str, data: Any, *, immediately: bool = False) -> None:
    """Publish ``data`` to ``stream`` from async code (held inside a handler).

    Takes the same arguments as :func:`publish`, but ``using``.
    """
    store, text = _prepare(stream, data)
    await deliver(current_outbox(), store.publish, (stream, text), immediately)
