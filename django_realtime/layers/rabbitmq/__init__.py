"""A channel layer on RabbitMQ, shared by processes on any number of machines.

``CHANNEL_LAYERS = {"default": {"BACKEND":
"django_realtime.layers.rabbitmq.RabbitMQChannelLayer", "CONFIG": {"url":
...}}}``; the options are documented on :class:`RabbitMQChannelLayer`.
It needs aio-pika (``pip install django-realtime-framework[rabbitmq]``), imported
only when the layer is: the system checks load without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django_realtime.layers.rabbitmq._names import DEFAULT_URL

if TYPE_CHECKING:
    from django_realtime.layers.rabbitmq.layer import RabbitMQChannelLayer

__all__ = ["DEFAULT_URL", "RabbitMQChannelLayer"]


def __getattr__(name: str) -> Any:
    if name == "RabbitMQChannelLayer":
        from django_realtime.layers.rabbitmq.layer import RabbitMQChannelLayer

        return RabbitMQChannelLayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
