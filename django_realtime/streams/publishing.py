"""Publish to streams from consumers and from ordinary Django code.

:func:`publish` and :func:`apublish` follow the rules of every send
(:mod:`django_realtime.delivery.sends`): inside a consumer handler the
publication is held until the handler returns and dropped if it raises;
inside ``transaction.atomic()`` it waits for the commit and is dropped on
rollback; ``immediately=True`` publishes now. The payload is checked and
encoded at the call, so a bad payload fails where it was given, not later
at the commit.

Inside ``transaction.atomic()``, :func:`publish` writes the publication in
the transaction itself where it can, so that it survives a crash right
after the commit: in the store's own tables when the store lives in the
transaction's database (the SQLite store in Django's SQLite file), or else
in the stream outbox when ``REALTIME["STREAM_OUTBOX"]`` is on for that
database (:mod:`django_realtime.streams.relay`). Such a publication is
kept if the transaction commits and gone if it rolls back, and is published
at the commit even inside a consumer handler (rule 3 of
:func:`~django_realtime.delivery.sends.decide`).
"""

from __future__ import annotations

from typing import Any

from django_realtime.delivery.outbox import current_outbox
from django_realtime.delivery.sends import deliver, deliver_sync
from django_realtime.streams import relay
from django_realtime.streams.positions import encode_data, validate_stream_name
from django_realtime.streams.registry import get_stream_store
from django_realtime.streams.stores.base import HistoryStore

__all__ = ["apublish", "publish"]


class _Writer:
    """Write one publication in a transaction: in the store, or the outbox."""

    __slots__ = ("data", "store", "stream")

    def __init__(self, store: HistoryStore, stream: str, data: str) -> None:
        self.store = store
        self.stream = stream
        self.data = data

    def writes_in(self, using: str) -> bool:
        return self.store.writes_in(using) or (
            using in relay.outbox_options().databases
        )

    def write_in(self, using: str) -> None:
        if self.store.writes_in(using):
            self.store.publish_in_transaction(self.stream, self.data, using)
        else:
            relay.write(using, self.stream, self.data, self.store)


def _prepare(stream: str, data: Any) -> tuple[HistoryStore, str]:
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
        using: The database alias whose transaction to wait for (or to
            write the publication in).
        immediately: Publish now, whatever the transaction or handler.

    Raises:
        ValueError: the name is invalid or the payload is over the stream's
            ``max_bytes``.
        TypeError: ``data`` is not JSON-serialisable.
    """
    store, text = _prepare(stream, data)
    deliver_sync(
        current_outbox(),
        store.publish,
        (stream, text),
        immediately,
        using,
        _Writer(store, stream, text),
    )


async def apublish(stream: str, data: Any, *, immediately: bool = False) -> None:
    """Publish ``data`` to ``stream`` from async code (held inside a handler).

    Takes the same arguments as :func:`publish`, but ``using``. It never
    writes in a transaction (Django's ORM has none in async code): inside a
    sync handler's transaction, through ``async_to_sync``, it waits for the
    commit.
    """
    store, text = _prepare(stream, data)
    await deliver(current_outbox(), store.publish, (stream, text), immediately)
