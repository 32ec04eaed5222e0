"""Resumable streams: sequenced server-to-client messages that survive reconnects.

Publish from anywhere (:func:`publish`, :func:`apublish`); serve streams to
clients with a :class:`StreamConsumer`; keep history in the store named by
``REALTIME["STREAM_STORE"]``. See ``docs/topics/streams.rst``.
"""

from django_realtime.exceptions import RequestError
from django_realtime.streams.consumer import StreamConsumer
from django_realtime.streams.positions import (
    History,
    HistoryPolicy,
    Position,
    Publication,
)
from django_realtime.streams.publishing import apublish, publish
from django_realtime.streams.registry import get_stream_store, set_stream_store

__all__ = [
    "History",
    "HistoryPolicy",
    "Position",
    "Publication",
    "RequestError",
    "StreamConsumer",
    "apublish",
    "get_stream_store",
    "publish",
    "set_stream_store",
]
