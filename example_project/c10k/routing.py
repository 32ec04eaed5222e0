"""WebSocket routes of c10k, for ``URLRouter`` in the project's asgi.py."""

from django.urls import path

from example_project.c10k.consumers import EchoConsumer

__all__ = ["websocket_urlpatterns"]

websocket_urlpatterns = [
    # An ASGI application, not a view: django-stubs knows only views.
    path("ws/c10k/echo/", EchoConsumer.as_asgi()),  # type: ignore[arg-type]
]
