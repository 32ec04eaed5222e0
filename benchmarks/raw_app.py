"""The floor: a framework-free ASGI application on the same server.

No Django, no routing beyond one dictionary lookup, no middleware:

``/ws/echo/async/`` (and any path not below)
    Accept, then send every text frame back.
``/ws/fanout/``
    Accept, and be one of the members the publisher sends to.
``/ws/publish/``
    Send each text frame received to every member, one after another,
    in this process (the in-memory floor of a group send).
"""

from typing import Any

_members: set[Any] = set()


async def _echo(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send({"type": "websocket.send", "text": message.get("text")})


async def _member(receive: Any, send: Any) -> None:
    _members.add(send)
    try:
        while (await receive())["type"] == "websocket.receive":
            pass
    finally:
        _members.discard(send)


async def _publish(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        event = {"type": "websocket.send", "text": message.get("text")}
        for member in list(_members):
            await member(event)


_ROUTES = {"/ws/fanout/": _member, "/ws/publish/": _publish}


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Serve WebSocket connections; nothing else."""
    if scope["type"] != "websocket":
        raise ValueError(f"Expected a websocket scope, got {scope['type']!r}.")
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await _ROUTES.get(scope["path"], _echo)(receive, send)
