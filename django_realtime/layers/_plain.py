"""Encode channel layer messages as bytes for a backend, and decode them.

The layers that keep messages outside the process (the SQLite file, the
PostgreSQL tables, RabbitMQ's queues) pickle them, restricted to plain data
both ways: ``dict``, ``list``, ``tuple``, ``set``, ``frozenset``, ``str``,
``bytes``, ``int``, ``float``, ``bool`` and ``None`` (exact types, not
subclasses). Anything else is refused when sent, so a receiver never meets
a message it cannot decode, and decoding never imports or calls anything: a
row or a message written into the backend by someone else cannot run code
in the processes that read it.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

__all__ = ["decode", "encoder"]

_PROTOCOL = 5


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"Expected plain data in a channel layer message, got a reference "
            f"to {module}.{name}."
        )


def encoder(layer: str) -> Callable[[dict[str, Any]], bytes]:
    """Return the ``encode(message) -> bytes`` of the layer named ``layer``.

    The returned function raises :exc:`TypeError`, naming ``layer``, for a
    message that holds a value that is not plain data.
    """

    class _PlainPickler(pickle.Pickler):
        # The C pickler handles the plain types itself and calls this for
        # every other object only.
        def reducer_override(self, obj: Any) -> Any:
            raise TypeError(
                f"{layer} messages may contain only dict, list, tuple, set, "
                "frozenset, str, bytes, int, float, bool and None; got "
                f"{type(obj).__name__}."
            )

    def encode(message: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        _PlainPickler(buffer, protocol=_PROTOCOL).dump(message)
        return buffer.getvalue()

    return encode


def decode(payload: bytes) -> dict[str, Any]:
    """Return the message encoded in ``payload``.

    Raises:
        pickle.UnpicklingError: ``payload`` is not a message an encoder of
            this module wrote.
    """
    message = _PlainUnpickler(io.BytesIO(payload)).load()
    if not isinstance(message, dict):
        raise pickle.UnpicklingError(
            f"Expected a dict in a channel layer message, got {type(message).__name__}."
        )
    return message
