"""Drive a :class:`StreamConsumer` in process, through ASGI, as a client would.

The client sends what it likes and may stop reading: the tests of hostile
and of slow clients share it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django_realtime.streams import StreamConsumer

__all__ = ["Client"]


class Client:
    """Drive a consumer through ASGI; its reading can be stopped.

    ``idle`` is set when the consumer waits for the next frame with none
    left; ``stuck`` when ``stuck_after`` of its sends wait for the client
    to read.
    """

    def __init__(
        self, consumer: type[StreamConsumer], path: str = "/ws/", stuck_after: int = 2
    ) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reading = asyncio.Event()
        self.reading.set()
        self.idle = asyncio.Event()
        self.stuck = asyncio.Event()
        self.stuck_after = stuck_after
        self.waiting = 0
        self.next_id = 0
        scope = {
            "type": "websocket",
            "path": path,
            "headers": [],
            "query_string": b"",
            "subprotocols": [],
        }
        self.task = asyncio.create_task(
            consumer.as_asgi()(scope, self._receive, self._send)
        )

    async def _receive(self) -> dict[str, Any]:
        if self.inbox.empty():
            self.idle.set()
        return await self.inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send" and not self.reading.is_set():
            self.waiting += 1
            if self.waiting >= self.stuck_after:
                self.stuck.set()
            await self.reading.wait()
            self.waiting -= 1
        await self.outbox.put(message)

    async def open(self) -> None:
        await self.inbox.put({"type": "websocket.connect"})
        accepted = await asyncio.wait_for(self.outbox.get(), 3)
        assert accepted["type"] == "websocket.accept"

    def send(self, kind: str, **fields: Any) -> int:
        self.next_id += 1
        text = json.dumps({"kind": kind, "id": self.next_id, **fields})
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})
        return self.next_id

    async def frame(self) -> dict[str, Any]:
        message = await asyncio.wait_for(self.outbox.get(), 3)
        assert message["type"] == "websocket.send", message
        frame: dict[str, Any] = json.loads(message["text"])
        return frame

    async def close(self) -> None:
        self.reading.set()
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 3)

    async def subscribe(self, stream: str) -> None:
        """Subscribe to ``stream``; return once the consumer says subscribed."""
        frame_id = self.send("subscribe", stream=stream)
        frame = await self.frame()
        assert (frame["kind"], frame["id"]) == ("subscribed", frame_id), frame
