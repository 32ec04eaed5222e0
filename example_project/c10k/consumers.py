"""The c10k echo consumer: what many idle connections cost, and no more.

Every frame a client sends comes back to it unchanged, text as text and
bytes as bytes. Nothing else happens, so a load test against it measures
the server and the framework, not the application.

The consumer has no channel layer (``channel_layer_alias = None``): an echo
answers the one connection it came from, so it needs no channel name and no
groups. With a layer, every connection would also hold a channel name, an
inbox in the layer and a second task waiting on it, and each connect and
disconnect would make a layer call (a Redis round trip with channels-redis);
without one, a held connection is the server's protocol object, the scope
and this small consumer waiting in ``receive()``.
"""

from __future__ import annotations

from django_realtime.consumers import AsyncWebsocketConsumer

__all__ = ["EchoConsumer"]


class EchoConsumer(AsyncWebsocketConsumer):
    """Accept every connection and send each frame back as it came."""

    channel_layer_alias = None

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Send the frame back: text as a text frame, bytes as a binary one."""
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data or b"")
