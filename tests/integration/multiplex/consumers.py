"""Ordinary consumers, written as for a socket of their own, for the tests."""

from __future__ import annotations

from typing import Any

from django_realtime.consumers import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    WebsocketConsumer,
)
from django_realtime.exceptions import DenyConnection
from django_realtime.streams import StreamConsumer

#: (consumer class name, topic, code) of every disconnect() called.
DISCONNECTS: list[tuple[str, str, int]] = []


class Echo(AsyncWebsocketConsumer):
    """Echo text and bytes; "close" closes with 4000 and a reason."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if text_data == "close":
            await self.close(4000, "asked to")
        elif text_data == "who":
            await self.send(text_data=f"{self.channel_name} {self.correlation_id}")
        elif text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)

    async def disconnect(self, code: int) -> None:
        DISCONNECTS.append(("Echo", self.scope["topic"], code))


class SyncEcho(WebsocketConsumer):
    """Echo text, from the sync pool."""

    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        self.send(text_data=f"sync {text_data}")

    def disconnect(self, code: int) -> None:
        DISCONNECTS.append(("SyncEcho", self.scope["topic"], code))


class Room(AsyncJsonWebsocketConsumer):
    """Only room "open" may be joined; reply with the route's values."""

    groups = ["rooms"]

    async def connect(self) -> None:
        room = self.scope["url_route"]["kwargs"]["room"]
        if room == "denied":
            raise DenyConnection
        if room != "open" and room != "other":
            await self.close(4403, f"not a member of {room}")
            return
        await self.accept()

    async def receive_json(self, content: Any) -> None:
        await self.send_json({"room": self.scope["url_route"]["kwargs"]["room"]})

    async def room_news(self, message: dict[str, Any]) -> None:
        await self.send_json({"news": message["text"], "topic": self.scope["topic"]})

    async def room_kick(self, message: dict[str, Any]) -> None:
        await self.close(4009, "kicked")

    async def disconnect(self, code: int) -> None:
        DISCONNECTS.append(("Room", self.scope["topic"], code))
        if Room.gone is not None:
            Room.gone.set()

    gone: Any = None


class Faulty(AsyncWebsocketConsumer):
    """Send something, then raise: the held send must not go out."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data="held")
        raise RuntimeError("boom")

    async def disconnect(self, code: int) -> None:
        DISCONNECTS.append(("Faulty", self.scope["topic"], code))


class Small(AsyncWebsocketConsumer):
    """Take messages of at most 10 bytes."""

    max_message_size = 10

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data)


class Feed(StreamConsumer):
    """Streams and requests inside a topic."""

    async def authorize_stream(self, stream: str) -> bool:
        return stream == "feed"

    async def request_echo(self, data: Any) -> Any:
        return data


class Waiting(AsyncWebsocketConsumer):
    """Wait in receive() until told to go on: the socket must still be read."""

    go: Any = None

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await type(self).go.wait()
        await self.send(text_data="went on")
