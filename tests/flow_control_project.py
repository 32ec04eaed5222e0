"""A server for the flow-control tests of tests/integration/test_daphne_flow.py.

The recommended stack, as the example project builds it (origin check,
connection limits, sessions and user), with a middleware of the user's
own that wraps ``send`` the way an error tracker or a tracer does:

``application``
    ``ProtocolTypeRouter({"websocket": UserSendWrapper(
    AllowedHostsOriginValidator(ConnectionLimits(AuthMiddlewareStack(
    URLRouter(...)))))})``.
``wrapped_outside``
    ``FlowControl(UserSendWrapper(ProtocolTypeRouter(...)))``: the user's
    middleware around the whole application, with flow control outside it.
``unguarded``
    ``UserSendWrapper(ProtocolTypeRouter(...))``: the same without
    ``FlowControl``, which daphne cannot hold (a warning says so).

Routes: ``ws/echo/`` sends every frame back; ``ws/group/`` is a member of
the group ``flow`` and sends each ``flow.message`` to its client. The
channel layer is Redis (``FLOW_REDIS``, prefix ``FLOW_PREFIX``) with a
capacity of ``FLOW_CAPACITY`` messages per channel.
"""

import os

import django
from django.conf import settings

REDIS = os.environ.get("FLOW_REDIS", "redis://127.0.0.1:6379")
PREFIX = os.environ.get("FLOW_PREFIX", "flow-test")
GROUP = "flow"

if not settings.configured:
    settings.configure(
        SECRET_KEY="django_realtime-flow-control-not-secret",
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
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "django_realtime.layers.redis.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [REDIS],
                    "prefix": f"{PREFIX}-layer",
                    "capacity": int(os.environ.get("FLOW_CAPACITY", "20")),
                },
            }
        },
        # The tests read the layer's and flow control's warnings.
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "console": {"class": "logging.StreamHandler", "formatter": "plain"}
            },
            "root": {"handlers": ["console"], "level": "WARNING"},
        },
    )
    django.setup()

from typing import Any  # noqa: E402

from django.urls import path  # noqa: E402

from django_realtime.auth import AuthMiddlewareStack  # noqa: E402
from django_realtime.consumers import (  # noqa: E402
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
)
from django_realtime.middleware.limits import ConnectionLimits  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.security import AllowedHostsOriginValidator  # noqa: E402
from django_realtime.servers.daphne import FlowControl  # noqa: E402


class Echo(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class Member(AsyncJsonWebsocketConsumer):
    groups = (GROUP,)

    async def flow_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event["data"])


class UserSendWrapper:
    """A user's middleware: counts what goes out, through a send of its own."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.sent = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting_send(message: dict[str, Any]) -> None:
            self.sent += 1
            await send(message)

        await self.application(dict(scope), receive, counting_send)


def _router() -> ProtocolTypeRouter:
    routes = URLRouter(
        [
            # django-stubs types path() for views; URLRouter takes ASGI apps.
            path("ws/echo/", Echo.as_asgi()),  # type: ignore[arg-type]
            path("ws/group/", Member.as_asgi()),  # type: ignore[arg-type]
        ]
    )
    stack = AllowedHostsOriginValidator(
        ConnectionLimits(AuthMiddlewareStack(routes), max_connections=100)
    )
    return ProtocolTypeRouter({"websocket": UserSendWrapper(stack)})


application = _router()
wrapped_outside = FlowControl(UserSendWrapper(_router()))
unguarded = UserSendWrapper(_router())
