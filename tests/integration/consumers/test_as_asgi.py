"""``as_asgi(**initkwargs)``: the constructor's arguments, checked when routes load.

As in Channels, the keyword arguments go to the consumer's constructor, so a
consumer whose ``__init__`` takes its own arguments ports unchanged. The
base constructor sets the others as attributes, which the class must
already have; a name neither takes is a ``TypeError`` at ``as_asgi()``, not
at the first connection.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_realtime.consumers import AsyncHttpConsumer, AsyncWebsocketConsumer
from django_realtime.testing import HttpCommunicator, WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)


class Room(AsyncWebsocketConsumer):
    """A consumer written for Channels: its own constructor argument."""

    def __init__(self, *args: Any, room: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.room = room
        self.visits = 0

    async def receive(self, text_data: str | None = None, bytes_data: Any = None):
        self.visits += 1
        await self.send(text_data=f"{self.room} {text_data} {self.visits}")


async def test_initkwargs_reach_a_constructor_that_takes_them() -> None:
    app = Room.as_asgi(room="lobby", groups=["lobby"])
    for _ in range(2):  # a new instance per connection
        communicator = WebsocketCommunicator(app, "/ws/")
        assert (await communicator.connect())[0]
        await communicator.send_to(text_data="hi")
        assert await communicator.receive_from() == "lobby hi 1"
        await communicator.disconnect()


async def test_a_constructor_of_a_mixin_further_down_the_chain_takes_its_names() -> (
    None
):
    class Tagged:
        def __init__(self, *args: Any, tag: str = "none", **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.tag = tag

    class Greeter(Tagged, Room):
        async def connect(self) -> None:
            await self.accept()
            await self.send(text_data=f"{self.room}/{self.tag}")

    communicator = WebsocketCommunicator(Greeter.as_asgi(room="r", tag="t"), "/ws/")
    assert (await communicator.connect())[0]
    assert await communicator.receive_from() == "r/t"
    await communicator.disconnect()


async def test_initkwargs_reach_an_http_consumer_constructor() -> None:
    class Answer(AsyncHttpConsumer):
        greeting = "hello"

        async def handle(self, body: bytes) -> None:
            await self.send_response(200, self.greeting.encode())

    communicator = HttpCommunicator(Answer.as_asgi(greeting="salut"), "GET", "/")
    response = await communicator.get_response()
    assert response["body"] == b"salut"


def test_a_name_neither_the_constructor_nor_the_class_has_is_refused() -> None:
    with pytest.raises(TypeError) as caught:
        Room.as_asgi(room="lobby", colour="red")
    message = str(caught.value)
    assert "Room.as_asgi() got an unexpected keyword argument 'colour'" in message
    assert "room" in message  # what it does take


def test_a_constructor_argument_left_out_is_refused_at_as_asgi() -> None:
    with pytest.raises(TypeError, match=r"Room\.as_asgi\(\).*'room'"):
        Room.as_asgi()


def test_a_constructor_without_kwargs_takes_only_its_own_names() -> None:
    class Closed(AsyncWebsocketConsumer):
        def __init__(self, size: int = 1) -> None:
            super().__init__()
            self.size = size

    assert Closed.as_asgi(size=2).consumer_initkwargs == {"size": 2}
    # groups is a class attribute, but this __init__ cannot receive it.
    with pytest.raises(TypeError, match="unexpected keyword argument 'groups'"):
        Closed.as_asgi(groups=["a"])
