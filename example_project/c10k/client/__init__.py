"""A small, fast asyncio WebSocket client for load runs (``manage.py testecho``).

::

    src = SourceAddresses()
    conn = await connect("ws://127.0.0.1:8000/ws/echo/", local_addr=src.next())
    await conn.send_text("hello")
    assert await conn.recv() == "hello"
    await conn.close()

Failures::

    RealtimeError
    ├── HandshakeError      the server answered the upgrade with another status
    └── ConnectionClosed    recv() or a send on a connection that has closed

Socket failures surface as :class:`OSError`, a handshake that takes too long
as :class:`TimeoutError`.
"""

from example_project.c10k.client.connect import SourceAddresses, connect
from example_project.c10k.client.connection import (
    ConnectionClosed,
    HandshakeError,
    LoadConnection,
)

__all__ = [
    "ConnectionClosed",
    "HandshakeError",
    "LoadConnection",
    "SourceAddresses",
    "connect",
]
