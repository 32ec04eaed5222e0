"""A raw ASGI application the live-server tests run under daphne.

WebSocket: accepts, echoes text and binary frames; the text ``pid`` is
answered with the server's process id. HTTP: ``/users/`` answers with the
number of users in the database, ``/pid/`` with the process id, anything
else with a greeting.
"""

from __future__ import annotations

import os
from typing import Any

from asgiref.sync import sync_to_async


def _count_users() -> int:
    from django.contrib.auth.models import User

    return User.objects.count()


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "pid":
            await send({"type": "websocket.send", "text": str(os.getpid())})
        elif message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    if scope["path"] == "/users/":
        body = str(await sync_to_async(_count_users)())
    elif scope["path"] == "/pid/":
        body = str(os.getpid())
    else:
        body = "hello from daphne"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Serve the echo WebSocket and the small HTTP endpoints."""
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)
    else:
        raise ValueError(f"Expected an http or websocket scope, got {scope['type']!r}.")
