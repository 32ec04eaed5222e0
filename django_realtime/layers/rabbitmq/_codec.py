"""Encode channel layer messages for RabbitMQ, and decode them.

Messages are pickled, restricted to plain data both ways: ``dict``,
``list``, ``tuple``, ``set``, ``frozenset``, ``str``, ``bytes``, ``int``,
``float``, ``bool`` and ``None``. Anything else is refused when sent, and
decoding never imports or calls anything, so a message published to the
broker by someone else cannot run code in the processes that read it.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

__all__ = ["decode", "encode"]

_PROTOCOL = 5


class _PlainPickler(pickle.Pickler):
    # The C pickler handles the plain types itself and calls this for the
    # other objects only.
    def reducer_override(self, obj: Any) -> Any:
        raise TypeError(
            "RabbitMQChannelLayer messages may contain only dict, list, tuple, "
            "set, frozenset, str, bytes, int, float, bool and None; got "
            f"{type(obj).__name__}."
        )


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"Expected plain data in a channel layer message, got a reference "
            f"to {module}.{name}."
        )


def encode(message: dict[str, Any]) -> bytes:
    """Return ``message`` as bytes.

    Raises:
        TypeError: ``message`` holds a value that is not plain data.
    """
    buffer = io.BytesIO()
    _PlainPickler(buffer, protocol=_PROTOCOL).dump(message)
    return buffer.getvalue()


def decode(payload: bytes) -> dict[str, Any]:
    """Return the message encoded in ``payload``.

    Raises:
        pickle.UnpicklingError: ``payload`` was not written by :func:`encode`.
    """
    message = _PlainUnpickler(io.BytesIO(payload)).load()
    if not isinstance(message, dict):
        raise pickle.UnpicklingError(
            f"Expected a dict in a channel layer message, got {type(message).__name__}."
        )
    return message
