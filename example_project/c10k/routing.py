"""WebSocket routes of c10k, for ``URLRouter`` in the project's asgi.py."""

from typing import Any

__all__ = ["websocket_urlpatterns"]

websocket_urlpatterns: list[Any] = []
