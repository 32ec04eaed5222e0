"""WebSocket routes of jobs, for ``URLRouter`` in the project's asgi.py."""

from typing import Any

__all__ = ["channel_routes", "websocket_urlpatterns"]

websocket_urlpatterns: list[Any] = []

#: Channel layer channels of ``manage.py runworker``, for ``ChannelNameRouter``.
channel_routes: dict[str, Any] = {}
