"""Encode channel layer messages for the PostgreSQL tables, and decode them.

The SQLite layer's restricted pickle (:mod:`django_realtime.layers.sqlite.
_codec`): plain data only, both ways, so a row written by hand cannot run
code in the processes that read it.
"""

from __future__ import annotations

import io
from typing import Any

from django_realtime.layers.sqlite._codec import _PROTOCOL, _PlainPickler, decode

__all__ = ["decode", "encode"]


class _Pickler(_PlainPickler):
    def reducer_override(self, obj: Any) -> Any:
        raise TypeError(
            "PostgresChannelLayer messages may contain only dict, list, tuple, "
            "set, frozenset, str, bytes, int, float, bool and None; got "
            f"{type(obj).__name__}."
        )


def encode(message: dict[str, Any]) -> bytes:
    """Return ``message`` as bytes.

    Raises:
        TypeError: ``message`` holds a value that is not plain data.
    """
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=_PROTOCOL).dump(message)
    return buffer.getvalue()
