"""Consumers of the drain tests, in-process and in the server processes."""

from __future__ import annotations

import asyncio

from django_realtime.consumers.websocket import AsyncWebsocketConsumer
from django_realtime.streams import StreamConsumer

#: ``slow`` handlers running in this process.
sleeping = 0
#: Set when a ``slow`` handler starts (an in-process test sets it up).
sleep_started: asyncio.Event | None = None


class Echo(AsyncWebsocketConsumer):
    """Echo text; ``slow <seconds>`` sleeps, then answers ``done``.

    The sleep is the handler in flight that a drain must wait for (a
    handler's sends go out when it returns); ``busy`` answers how many
    are sleeping.
    """

    async def connect(self) -> None:
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        global sleeping
        if text_data == "busy":
            await self.send(text_data=str(sleeping))
        elif text_data is not None and text_data.startswith("slow "):
            sleeping += 1
            if sleep_started is not None:
                sleep_started.set()
            try:
                await asyncio.sleep(float(text_data.split()[1]))
            finally:
                sleeping -= 1
            await self.send(text_data="done")
        else:
            await self.send(text_data=text_data, bytes_data=bytes_data)


class Streams(StreamConsumer):
    """Let anyone follow the ``drain.*`` streams."""

    channel_layer_alias = None

    async def authorize_stream(self, stream: str) -> bool:
        return stream.startswith("drain.")
