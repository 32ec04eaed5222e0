"""The soak run's application (benchmarks.soak).

``ws/soak/<room>/``
    An :class:`~django_realtime.consumers.AsyncWebsocketConsumer` that joins
    the group ``room-<room>`` on connect and leaves it on disconnect. Each
    text frame it receives is sent to its group; each ``room.message`` it
    gets from the channel layer goes to its client as text.
``soak/stats``
    A plain ASGI HTTP endpoint for the driver, read only when no WebSocket
    is open: after a full garbage collection, the consumers still alive,
    the event loop's tasks, the objects the collector tracks and the
    layer's counters, as JSON. With ``?trim=1`` it then hands the heap's
    free memory back to the system (glibc's ``malloc_trim``) and reports
    the RSS before and after: what the allocator kept, as opposed to what
    the process still uses.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.soak_settings")
django.setup()

import asyncio  # noqa: E402
import ctypes  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
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


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stats(trim: bool) -> dict[str, Any]:
    """Return the process's live objects and the layer's counters."""
    gc.collect()
    layer = get_channel_layer()
    figures: dict[str, Any] = {
        "consumers": len(_alive),
        "tasks": len(asyncio.all_tasks()),
        "gc_objects": len(gc.get_objects()),
        "layer": dataclasses.asdict(layer.stats)  # type: ignore[union-attr]
        if dataclasses.is_dataclass(getattr(layer, "stats", None))
        else None,
    }
    if trim:
        figures["rss_before_trim_kib"] = _rss_kib()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        figures["rss_after_trim_kib"] = _rss_kib()
    return figures


async def stats_endpoint(scope: Any, receive: Any, send: Any) -> None:
    """Answer ``GET /soak/stats`` with :func:`stats`; 404 to anything else."""
    if scope["path"] != "/soak/stats":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps(stats(scope["query_string"] == b"trim=1")).encode()
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
