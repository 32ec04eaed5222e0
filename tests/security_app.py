"""A server-side application for tests/e2e/test_security_e2e.py.

The recommended middleware stack in front of one echo route: the origin
check, the connection limits, the session and user. Logging is set up as a
project would: each record is one line, ``LEVEL logger: message``, on the
server's standard error. The environment variable
``SECURITY_E2E_MAX_PER_ADDRESS`` sets ``max_connections_per_address``.
"""

import os
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        SECRET_KEY="django_realtime-security-e2e-not-secret",
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        INSTALLED_APPS=[
            "django_realtime",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
        },
        CHANNEL_LAYERS={
            "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}
        },
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"line": {"format": "%(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "console": {"class": "logging.StreamHandler", "formatter": "line"}
            },
            "root": {"handlers": ["console"], "level": "INFO"},
        },
    )
    django.setup()

from django.urls import path

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.middleware.limits import ConnectionLimits
from django_realtime.routing import ProtocolTypeRouter, URLRouter
from django_realtime.security import AllowedHostsOriginValidator


class Echo(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


_per_address = os.environ.get("SECURITY_E2E_MAX_PER_ADDRESS")

application: Any = ProtocolTypeRouter(
    {
        "websocket": AllowedHostsOriginValidator(
            ConnectionLimits(
                AuthMiddlewareStack(URLRouter([path("ws/echo/", Echo.as_asgi())])),
                max_connections=1000,
                max_connections_per_address=int(_per_address or 1000),
                handshake_timeout=10,
            )
        )
    }
)
