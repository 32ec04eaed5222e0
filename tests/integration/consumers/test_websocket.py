"""WebSocket consumers: the behaviour Channels users rely on, and ours."""

import asyncio
import logging
import threading

import pytest
from asgiref.sync import async_to_sync

from django_realtime.consumers import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)
from django_realtime.exceptions import DenyConnection, StopConsumer
from django_realtime.layers import get_channel_layer
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)


class Echo(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.send(text_data=text_data.upper())
        else:
            await self.send(bytes_data=bytes_data[::-1])


class SyncEcho(WebsocketConsumer):
    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data=f"{threading.current_thread().name}|{text_data}")


async def connected(consumer, path="/ws/", **kwargs):
    communicator = WebsocketCommunicator(consumer, path, **kwargs)
    ok, _ = await communicator.connect()
    assert ok
    return communicator


@pytest.mark.parametrize("consumer", [Echo, SyncEcho])
async def test_default_connect_accepts(consumer):
    communicator = await connected(consumer.as_asgi())
    await communicator.disconnect()


async def test_async_consumer_echoes_text_and_bytes():
    communicator = await connected(Echo.as_asgi())
    await communicator.send_to(text_data="hello")
    assert await communicator.receive_from() == "HELLO"
    await communicator.send_to(bytes_data=b"abc")
    assert await communicator.receive_from() == b"cba"
    await communicator.disconnect()


async def test_sync_consumer_runs_hooks_off_the_event_loop_thread():
    communicator = await connected(SyncEcho.as_asgi())
    await communicator.send_to(text_data="hi")
    thread, text = (await communicator.receive_from()).split("|")
    assert text == "hi"
    assert thread != threading.current_thread().name
    await communicator.disconnect()


async def test_slow_sync_handler_does_not_delay_another_connection():
    release = threading.Event()

    class Blocking(WebsocketConsumer):
        def receive(self, text_data=None, bytes_data=None):
            if text_data == "block":
                release.wait(5)
            self.send(text_data=text_data)

    slow = await connected(Blocking.as_asgi())
    fast = await connected(Blocking.as_asgi())
    await slow.send_to(text_data="block")
    await fast.send_to(text_data="quick")
    # The fast connection is answered while the slow handler still blocks.
    assert await fast.receive_from(timeout=2) == "quick"
    assert await slow.receive_nothing(timeout=0.05)
    release.set()
    assert await slow.receive_from() == "block"
    await slow.disconnect()
    await fast.disconnect()


async def test_as_asgi_sets_initkwargs_on_each_instance():
    class Greeter(AsyncWebsocketConsumer):
        greeting = "hello"

        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=f"{self.greeting} {text_data}")

    communicator = await connected(Greeter.as_asgi(greeting="bonjour"))
    await communicator.send_to(text_data="monde")
    assert await communicator.receive_from() == "bonjour monde"
    await communicator.disconnect()


def test_as_asgi_refuses_unknown_initkwargs():
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Echo.as_asgi(colour="red")


def test_as_asgi_exposes_the_consumer_class():
    app = Echo.as_asgi(groups=["a"])
    assert app.consumer_class is Echo
    assert app.consumer_initkwargs == {"groups": ["a"]}


async def test_accept_with_subprotocol_and_headers():
    class Chooser(AsyncWebsocketConsumer):
        async def connect(self):
            await self.accept(
                subprotocol=self.scope["subprotocols"][-1],
                headers=[(b"x-room", b"lobby")],
            )

    communicator = WebsocketCommunicator(
        Chooser.as_asgi(), "/ws/", subprotocols=["v1", "v2"]
    )
    ok, subprotocol = await communicator.connect()
    assert ok
    assert subprotocol == "v2"
    await communicator.disconnect()


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_deny_connection_refuses_the_handshake_and_drops_held_sends(flavour):
    if flavour == "async":

        class Refuser(AsyncWebsocketConsumer):
            async def connect(self):
                await self.accept()
                raise DenyConnection

    else:

        class Refuser(WebsocketConsumer):
            def connect(self):
                self.accept()
                raise DenyConnection

    communicator = WebsocketCommunicator(Refuser.as_asgi(), "/ws/")
    ok, _ = await communicator.connect()
    assert not ok


async def test_close_with_code_and_reason_reaches_the_client():
    class Closer(AsyncWebsocketConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            await self.close(code=4001, reason="bye")

    communicator = await connected(Closer.as_asgi())
    await communicator.send_to(text_data="x")
    message = await communicator.receive_output()
    assert message == {"type": "websocket.close", "code": 4001, "reason": "bye"}


async def test_send_with_close_sends_then_closes():
    class Last(WebsocketConsumer):
        def receive(self, text_data=None, bytes_data=None):
            self.send(text_data="last words", close=4002)

    communicator = await connected(Last.as_asgi())
    await communicator.send_to(text_data="x")
    assert await communicator.receive_from() == "last words"
    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 4002,
    }


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_sends_of_a_failing_handler_never_reach_the_client(flavour):
    if flavour == "async":

        class Failing(AsyncWebsocketConsumer):
            async def receive(self, text_data=None, bytes_data=None):
                await self.send(text_data="half")
                raise RuntimeError("boom")

    else:

        class Failing(WebsocketConsumer):
            def receive(self, text_data=None, bytes_data=None):
                self.send(text_data="half")
                raise RuntimeError("boom")

    communicator = await connected(Failing.as_asgi())
    await communicator.send_to(text_data="x")
    with pytest.raises(RuntimeError, match="boom"):
        await communicator.receive_from()


async def test_sends_are_held_until_the_handler_returns():
    gate = asyncio.Event()

    class Held(AsyncWebsocketConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data="one")
            await gate.wait()
            await self.send(text_data="two")

    communicator = await connected(Held.as_asgi())
    await communicator.send_to(text_data="x")
    assert await communicator.receive_nothing(timeout=0.05)
    gate.set()
    assert await communicator.receive_from() == "one"
    assert await communicator.receive_from() == "two"
    await communicator.disconnect()


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_immediately_sends_held_messages_first_then_its_own(flavour):
    gate = threading.Event()

    if flavour == "async":

        class Progress(AsyncWebsocketConsumer):
            async def receive(self, text_data=None, bytes_data=None):
                await self.send(text_data="started")
                await self.send(text_data="50%", immediately=True)
                await asyncio.to_thread(gate.wait, 5)
                await self.send(text_data="done")

    else:

        class Progress(WebsocketConsumer):
            def receive(self, text_data=None, bytes_data=None):
                self.send(text_data="started")
                self.send(text_data="50%", immediately=True)
                gate.wait(5)
                self.send(text_data="done")

    communicator = await connected(Progress.as_asgi())
    await communicator.send_to(text_data="go")
    assert await communicator.receive_from() == "started"
    assert await communicator.receive_from() == "50%"
    assert await communicator.receive_nothing(timeout=0.05)
    gate.set()
    assert await communicator.receive_from() == "done"
    await communicator.disconnect()


async def test_layer_message_type_dispatches_to_the_handler_with_underscores():
    class Listener(AsyncWebsocketConsumer):
        async def connect(self):
            await self.accept()
            await self.send(text_data=self.channel_name)

        async def chat_message(self, event):
            await self.send(text_data=event["text"])

    communicator = await connected(Listener.as_asgi())
    channel_name = await communicator.receive_from()
    await get_channel_layer().send(channel_name, {"type": "chat.message", "text": "hi"})
    assert await communicator.receive_from() == "hi"
    await communicator.disconnect()


class Recorder(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.send(text_data=self.channel_name)


@pytest.mark.parametrize(
    "kind",
    [
        "_private",
        "close",
        "send",
        "websocket.accept",
        "websocket.connect",
        "websocket.disconnect",
        "missing.handler",
    ],
)
async def test_a_layer_message_without_a_handler_is_skipped_with_a_warning(
    kind, caplog
):
    class Talker(Recorder):
        async def chat_message(self, event):
            await self.send(text_data=event["text"])

    communicator = await connected(Talker.as_asgi())
    channel_name = await communicator.receive_from()
    layer = get_channel_layer()
    with caplog.at_level(logging.WARNING, "django_realtime.consumers.base"):
        await layer.send(channel_name, {"type": kind})
        await layer.send(channel_name, {"type": "chat.message", "text": "still here"})
        assert await communicator.receive_from() == "still here"
    assert "Skipped a channel layer message for /ws/" in caplog.text
    await communicator.disconnect()


async def test_stop_consumer_raised_by_a_layer_handler_ends_cleanly():
    class Stopper(Recorder):
        async def shutdown(self, event):
            await self.close()
            raise StopConsumer

    communicator = await connected(Stopper.as_asgi())
    channel_name = await communicator.receive_from()
    await get_channel_layer().send(channel_name, {"type": "shutdown"})
    assert await communicator.receive_output() == {"type": "websocket.close"}
    await communicator.wait(timeout=1)


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_groups_are_joined_before_connect_and_left_before_disconnect(flavour):
    layer = get_channel_layer()
    seen = []

    if flavour == "async":

        class Member(AsyncWebsocketConsumer):
            groups = ["members"]

            async def connect(self):
                await self.accept()
                await self.channel_layer.group_send("members", {"type": "ping"})

            async def ping(self, event):
                await self.send(text_data="pong")

            async def disconnect(self, code):
                seen.append(code)
                await self.channel_layer.group_send("members", {"type": "ping"})

    else:

        class Member(WebsocketConsumer):
            groups = ["members"]

            def connect(self):
                self.accept()
                send = async_to_sync(self.channel_layer.group_send)
                send("members", {"type": "ping"})

            def ping(self, event):
                self.send(text_data="pong")

            def disconnect(self, code):
                seen.append(code)
                send = async_to_sync(self.channel_layer.group_send)
                send("members", {"type": "ping"})

    communicator = await connected(Member.as_asgi())
    # Joined before connect(): connect()'s own group_send comes back.
    assert await communicator.receive_from() == "pong"
    observer = await layer.new_channel()
    await layer.group_add("members", observer)
    await communicator.disconnect(code=4000)
    assert seen == [4000]
    # Left before disconnect(): only the observer gets disconnect()'s ping.
    ping = await asyncio.wait_for(layer.receive(observer), 1)
    assert ping["type"] == "ping"
    await layer.group_discard("members", observer)


async def test_json_consumer_round_trips_content():
    class Json(AsyncJsonWebsocketConsumer):
        async def receive_json(self, content):
            await self.send_json({"echo": content})

    communicator = await connected(Json.as_asgi())
    await communicator.send_json_to({"a": [1, 2]})
    assert await communicator.receive_json_from() == {"echo": {"a": [1, 2]}}
    await communicator.disconnect()


async def test_json_consumer_uses_overridden_encoder_and_decoder():
    class Custom(JsonWebsocketConsumer):
        @classmethod
        def decode_json(cls, text_data):
            return text_data.split(",")

        @classmethod
        def encode_json(cls, content):
            return ";".join(content)

        def receive_json(self, content):
            self.send_json(list(reversed(content)))

    communicator = await connected(Custom.as_asgi())
    await communicator.send_to(text_data="a,b,c")
    assert await communicator.receive_from() == "c;b;a"
    await communicator.disconnect()


@pytest.mark.parametrize(
    "consumer", [AsyncJsonWebsocketConsumer, JsonWebsocketConsumer]
)
@pytest.mark.parametrize(
    ("frame", "code"), [({"bytes_data": b"\x00"}, 1003), ({"text_data": "{nope"}, 1007)]
)
async def test_json_consumer_closes_on_a_frame_it_cannot_decode(
    consumer, frame, code, caplog
):
    communicator = await connected(consumer.as_asgi())
    with caplog.at_level(logging.WARNING, logger="django_realtime"):
        await communicator.send_to(**frame)
        assert await communicator.receive_output() == {
            "type": "websocket.close",
            "code": code,
        }
    assert len([r for r in caplog.records if r.name.startswith("django_realtime")]) == 1


async def test_groups_without_a_channel_layer_is_a_clear_error():
    class Lonely(AsyncWebsocketConsumer):
        channel_layer_alias = None
        groups = ["room"]

    communicator = WebsocketCommunicator(Lonely.as_asgi(), "/ws/")
    with pytest.raises(Exception, match="declares groups"):
        await communicator.connect()


async def test_consumer_without_a_layer_has_no_channel_name():
    class NoLayer(AsyncWebsocketConsumer):
        channel_layer_alias = None

        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=repr((self.channel_layer, self.channel_name)))

    communicator = await connected(NoLayer.as_asgi())
    await communicator.send_to(text_data="x")
    assert await communicator.receive_from() == "(None, None)"
    await communicator.disconnect()


# Listening on the channel only once its name is given out


class InAGroup(Echo):
    groups = ["listeners"]


class HandsOutItsName(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=self.channel_name)

    async def note(self, event):
        await self.send(text_data=f"note: {event['text']}")


class SyncHandsOutItsName(WebsocketConsumer):
    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data=self.channel_name)

    def note(self, event):
        self.send(text_data=f"note: {event['text']}")


async def test_a_consumer_that_never_gives_out_its_name_runs_no_listening_task():
    before = len(asyncio.all_tasks())
    silent = await connected(Echo.as_asgi())
    with_groups = await connected(InAGroup.as_asgi())
    tasks = len(asyncio.all_tasks()) - before
    await silent.disconnect()
    await with_groups.disconnect()

    # One application task each, plus one listener for the consumer in groups.
    assert tasks == 3


@pytest.mark.parametrize("consumer", [HandsOutItsName, SyncHandsOutItsName])
async def test_messages_to_a_name_read_in_a_handler_reach_the_consumer(consumer):
    communicator = await connected(consumer.as_asgi())
    await communicator.send_to(text_data="name?")
    name = await communicator.receive_from()
    await get_channel_layer().send(name, {"type": "note", "text": "hi"})

    assert await communicator.receive_from() == "note: hi"
    await communicator.disconnect()
