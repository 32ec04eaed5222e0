"""AsyncHttpConsumer: whole and streamed responses."""

import pytest

from django_realtime.consumers import AsyncHttpConsumer
from django_realtime.layers import get_channel_layer
from django_realtime.testing import HttpCommunicator

pytestmark = pytest.mark.timeout(10)


class Hello(AsyncHttpConsumer):
    async def handle(self, body):
        await self.send_response(
            201, b"got " + body, headers={"Content-Type": "text/plain"}
        )


async def test_handle_receives_the_whole_body_and_sends_a_response():
    communicator = HttpCommunicator(Hello.as_asgi(), "POST", "/hello/", body=b"abc")
    response = await communicator.get_response()
    assert response["status"] == 201
    assert response["body"] == b"got abc"
    assert (b"Content-Type", b"text/plain") in response["headers"]


async def test_code_after_send_response_still_runs():
    ran = []

    class After(AsyncHttpConsumer):
        async def handle(self, body):
            await self.send_response(200, b"ok")
            ran.append("after")

        async def disconnect(self):
            ran.append("disconnect")

    response = await HttpCommunicator(After.as_asgi(), "GET", "/").get_response()
    assert response["body"] == b"ok"
    assert ran == ["after", "disconnect"]


async def test_response_streams_from_channel_layer_handlers():
    class Stream(AsyncHttpConsumer):
        async def handle(self, body):
            await self.send_headers(headers=[(b"content-type", b"text/event-stream")])
            await self.send_body(b"", more_body=True)
            await self.channel_layer.send(self.channel_name, {"type": "tick", "n": 1})

        async def tick(self, event):
            n = event["n"]
            if n < 3:
                await self.send_body(b"data: %d\n\n" % n, more_body=True)
                await self.channel_layer.send(
                    self.channel_name, {"type": "tick", "n": n + 1}
                )
            else:
                await self.send_body(b"data: end\n\n")

    assert get_channel_layer() is not None
    response = await HttpCommunicator(Stream.as_asgi(), "GET", "/").get_response()
    assert response["status"] == 200
    assert response["body"] == b"data: 1\n\ndata: 2\n\ndata: end\n\n"


async def test_unimplemented_handle_is_a_clear_error():
    with pytest.raises(NotImplementedError, match="must override handle"):
        await HttpCommunicator(AsyncHttpConsumer.as_asgi(), "GET", "/").get_response()
