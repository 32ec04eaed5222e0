"""The application the e2e tests of ``manage.py realtime`` serve.

``/ws/whoami/`` takes logged-in users only (origin checked as for
browsers): it answers each text frame with the user's name and the text,
each binary frame with its bytes reversed; it closes with 1000 on "done"
and with 4003 on "bye".
"""

from __future__ import annotations

from django.core.asgi import get_asgi_application

http = get_asgi_application()

from django.urls import path  # noqa: E402

from django_realtime.auth import AuthMiddlewareStack  # noqa: E402
from django_realtime.consumers import AsyncWebsocketConsumer  # noqa: E402
from django_realtime.exceptions import DenyConnection  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.security import AllowedHostsOriginValidator  # noqa: E402


class WhoAmI(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            raise DenyConnection
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if text_data == "done":
            await self.close()
        elif text_data == "bye":
            await self.close(code=4003, reason="see you")
        elif text_data is not None:
            name = self.scope["user"].get_username()
            await self.send(text_data=f"{name}: {text_data}")
        else:
            await self.send(bytes_data=(bytes_data or b"")[::-1])


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/whoami/", WhoAmI.as_asgi())]))
        ),
    }
)
