"""A channel layer on RabbitMQ, shared by processes on any number of machines.

``CHANNEL_LAYERS = {"default": {"BACKEND":
"django_realtime.layers.rabbitmq.RabbitMQChannelLayer", "CONFIG": {"url":
...}}}``; the options are documented on :class:`RabbitMQChannelLayer`.
It needs aio-pika (``pip install django-realtime[rabbitmq]``).
"""

from django_realtime.layers.rabbitmq.layer import DEFAULT_URL, RabbitMQChannelLayer

__all__ = ["DEFAULT_URL", "RabbitMQChannelLayer"]
