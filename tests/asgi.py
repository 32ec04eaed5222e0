"""The test project's ASGI application (settings.ASGI_APPLICATION)."""

from django.core.asgi import get_asgi_application
from django.urls import path

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.routing import ProtocolTypeRouter, URLRouter


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data, bytes_data=bytes_data)


application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]),
    }
)
