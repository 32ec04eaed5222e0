"""Consumers: the classes a connection's messages are handled by.

- :class:`AsyncConsumer`: any protocol, async or sync handlers.
- :class:`SyncConsumer`: any protocol, sync handlers.
- :class:`AsyncWebsocketConsumer`: WebSocket, async hooks.
- :class:`WebsocketConsumer`: WebSocket, sync hooks on a thread pool.
- :class:`AsyncJsonWebsocketConsumer`: WebSocket and JSON, async hooks.
- :class:`JsonWebsocketConsumer`: WebSocket and JSON, sync hooks.
- :class:`AsyncHttpConsumer`: HTTP long-poll and streaming responses.
- :class:`LoginRequiredMixin`: refuse anonymous users before ``connect()``.
"""

from django_realtime.consumers.base import AsyncConsumer, SyncConsumer
from django_realtime.consumers.http import AsyncHttpConsumer
from django_realtime.consumers.mixins import LoginRequiredMixin
from django_realtime.consumers.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)

__all__ = [
    "AsyncConsumer",
    "AsyncHttpConsumer",
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "JsonWebsocketConsumer",
    "LoginRequiredMixin",
    "SyncConsumer",
    "WebsocketConsumer",
]
