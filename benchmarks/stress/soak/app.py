"""The soak run's application (benchmarks.stress.soak).

``ws/soak/<room>/``
    An :class:`~django_realtime.consumers.AsyncWebsocketConsumer` that joins
    the group ``room-<room>`` on connect and leaves it on disconnect. Each
    text frame it receives is sent to its group; each ``room.message`` it
    gets from the channel layer goes to its client as text.
``soak/stats``
    A plain ASGI HTTP endpoint for the driver, read only when no WebSocket
    is open: after a full garbage collection, the consumers still alive
    (and what holds the first of them), the event loop's tasks, the objects
    the collector tracks and the layer's counters, as JSON.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.stress.soak.settings")
django.setup()

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
import weakref  # noqa: E402
from typing import Any  # noqa: E402

from django.urls import path  # noqa: E402

from django_realtime.consumers import AsyncWebsocketConsumer  # noqa: E402
from django_realtime.layers import get_channel_layer  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

_alive: "weakref.WeakSet[RoomMember]" = weakref.WeakSet()


class RoomMember(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        _alive.add(self)
        self.room = f"room-{self.scope['url_route']['kwargs']['room']}"
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.channel_layer.group_send(
            self.room, {"type": "room.message", "text": text_data}
        )

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


def _holders(target: object, depth: int = 7) -> list[str]:
    """Describe what keeps ``target`` alive: chains of referrer types.

    The search's own lists and frames are left out; dicts show the keys
    under which they hold the object, frames their function.
    """
    ignored = {id(sys._getframe())}
    chains: list[str] = []
    ignored.add(id(chains))
    stack: list[tuple[object, str, int]] = [(target, type(target).__name__, 0)]
    ignored.add(id(stack))
    seen = {id(target)}
    ignored.add(id(seen))
    while stack and len(chains) < 16:
        obj, path, level = stack.pop(0)
        referrers = [
            r
            for r in gc.get_referrers(obj)
            if id(r) not in ignored and id(r) not in seen
        ]
        ignored.add(id(referrers))
        seen.update(id(r) for r in referrers)
        if level == depth or not referrers:
            chains.append(path)
            continue
        for referrer in referrers[:4]:
            if isinstance(referrer, dict):
                keys = [str(k) for k, v in referrer.items() if v is obj][:2]
                name = f"dict[{','.join(keys)}]"
            elif isinstance(referrer, asyncio.Task):
                name = f"Task {referrer.get_name()!r}"
            elif isinstance(referrer, asyncio.TimerHandle):
                # A timer keeps the context it was scheduled in until it
                # leaves the loop: say when, and whether it was cancelled.
                due = referrer.when() - asyncio.get_running_loop().time()
                state = "cancelled, " if referrer.cancelled() else ""
                name = f"TimerHandle ({state}due in {due:.0f} s)"
            elif isinstance(referrer, types.FrameType):
                name = f"frame {referrer.f_code.co_qualname}"
            else:
                name = type(referrer).__qualname__
            stack.append((referrer, f"{path} <- {name}", level + 1))
    return chains


def stats() -> dict[str, Any]:
    """Return the process's live objects and the layer's counters."""
    gc.collect()
    layer = get_channel_layer()
    figures: dict[str, Any] = {
        "consumers": len(_alive),
        "held_by": [_holders(consumer) for consumer in _alive.copy()][:2],
        "tasks": len(asyncio.all_tasks()),
        "gc_objects": len(gc.get_objects()),
        "layer": dataclasses.asdict(layer.stats)  # type: ignore[union-attr]
        if dataclasses.is_dataclass(getattr(layer, "stats", None))
        else None,
    }
    return figures


async def stats_endpoint(scope: Any, receive: Any, send: Any) -> None:
    """Answer ``GET /soak/stats`` with :func:`stats`; 404 to anything else."""
    if scope["path"] != "/soak/stats":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps(stats()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


application = ProtocolTypeRouter(
    {
        "http": stats_endpoint,
        "websocket": URLRouter(
            # django-stubs types path() for views; URLRouter takes ASGI apps.
            [path("ws/soak/<int:room>/", RoomMember.as_asgi())]  # type: ignore[arg-type]
        ),
    }
)
