"""System checks for RabbitMQ layers named in the settings.

Every ``CHANNEL_LAYERS`` alias whose ``BACKEND`` is the RabbitMQ channel
layer is checked when ``manage.py check`` (or ``runserver``) runs:

Errors
    ``django_realtime.rabbitmq.E001``
        ``url`` is not an ``amqp://`` or ``amqps://`` URL with a host.
    ``django_realtime.rabbitmq.E002``
        aio-pika, which the layer needs, is not installed.

Warnings
    ``django_realtime.rabbitmq.W001``
        The broker does not accept connections at ``url``'s host and port
        right now. A warning, not an error: the layer connects on first
        use and again after an outage, and the broker may start after the
        project; until then every layer operation raises
        :exc:`~django_realtime.exceptions.ChannelLayerError`.

Settings are read when the checks run, never at import time. This module
does not import aio-pika.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from django_realtime.layers.rabbitmq._names import DEFAULT_URL, broker_address

__all__ = ["check_rabbitmq_layers"]

_LAYER = "RabbitMQChannelLayer"

#: Seconds to wait for the broker's port to answer.
PROBE_TIMEOUT = 1.0


def _configured_urls() -> Iterator[tuple[str, object]]:
    """Yield (where it is configured, the url) for each RabbitMQ layer."""
    layers: Any = getattr(settings, "CHANNEL_LAYERS", None)
    if not isinstance(layers, dict):
        return
    for alias, layer in layers.items():
        if not isinstance(layer, dict):
            continue
        backend = layer.get("BACKEND")
        if isinstance(backend, str) and backend.endswith(_LAYER):
            config = layer.get("CONFIG", {})
            url = config.get("url", DEFAULT_URL) if isinstance(config, dict) else None
            yield f"CHANNEL_LAYERS[{alias!r}]", url


def _check_url(where: str, url: object) -> list[CheckMessage]:
    try:
        address = broker_address(url)
    except (TypeError, ValueError) as error:
        return [
            Error(
                f"{where} has an invalid RabbitMQ url: {error}",
                hint=f"Set CONFIG['url'] to an AMQP URL such as {DEFAULT_URL!r}.",
                id="django_realtime.rabbitmq.E001",
            )
        ]
    # "amqp://host:port/vhost": the host may be an IPv6 address.
    host, port = address.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as error:
        return [
            Warning(
                f"{where}: RabbitMQ at {address} does not accept connections "
                f"({error}).",
                hint="Start the broker, or fix CONFIG['url']. The layer "
                "connects on first use; until the broker answers, every "
                "layer operation raises ChannelLayerError.",
                id="django_realtime.rabbitmq.W001",
            )
        ]
    return []


@register("realtime")
def check_rabbitmq_layers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check the url of every RabbitMQ layer, and that the broker answers."""
    configured = list(_configured_urls())
    if not configured:
        return []
    messages: list[CheckMessage] = []
    if importlib.util.find_spec("aio_pika") is None:
        messages.append(
            Error(
                f"{configured[0][0]} is a RabbitMQ layer, but aio-pika is not "
                "installed.",
                hint="pip install 'django-realtime-framework[rabbitmq]'",
                id="django_realtime.rabbitmq.E002",
            )
        )
    seen: set[tuple[str, str]] = set()
    for where, url in configured:
        key = (where, repr(url))
        if key not in seen:
            seen.add(key)
            messages.extend(_check_url(where, url))
    return messages
