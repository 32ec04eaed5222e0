"""Drive one echo consumer in-process; shared by the in-process benchmarks."""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def echo_rate(consumer: Any, count: int) -> float:
    """Return messages per second for ``count`` 64-byte round trips.

    ``consumer`` is a consumer class with ``as_asgi()``; it is fed ASGI
    messages through queues, with no server and no sockets.
    """
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "websocket", "path": "/", "headers": []}
    task = asyncio.create_task(consumer.as_asgi()(scope, inbox.get, outbox.put))
    await inbox.put({"type": "websocket.connect"})
    await outbox.get()
    frame = {"type": "websocket.receive", "text": "x" * 64}
    start = time.perf_counter()
    for _ in range(count):
        await inbox.put(frame)
        await outbox.get()
    elapsed = time.perf_counter() - start
    await inbox.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(task, 10)
    return count / elapsed
