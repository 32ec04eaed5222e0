"""A plain ASGI application: Django for HTTP, an echo for WebSocket.

On a ``channel`` scope (runworker), a message ``{"type": "echo", "reply_to":
name, "text": ...}`` is answered on ``reply_to`` through the default layer.
"""

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.runserver_project.settings")

from django.core.asgi import get_asgi_application

django_application = get_asgi_application()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Dispatch on the scope type."""
    if scope["type"] == "http":
        await django_application(scope, receive, send)
    elif scope["type"] == "websocket":
        await _echo(receive, send)
    elif scope["type"] == "channel":
        await _answer(receive)
    else:
        raise ValueError(f"Expected an http, websocket or channel scope, got {scope}")


async def _echo(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text")})
        elif message["type"] == "websocket.disconnect":
            return


async def _answer(receive: Any) -> None:
    from django_realtime.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("Expected a 'default' channel layer, got none.")
    while True:
        message = await receive()
        await layer.send(
            message["reply_to"],
            {"type": "echo.reply", "text": message["text"], "pid": os.getpid()},
        )
