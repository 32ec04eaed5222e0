"""Held and on-commit sends, with real transactions on SQLite and PostgreSQL."""

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.db import transaction

from django_realtime.consumers import AsyncWebsocketConsumer, WebsocketConsumer
from django_realtime.delivery import (
    asend_to_group,
    send_to_channel,
    send_to_group,
    sends as delivery,
)
from django_realtime.layers import get_channel_layer
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(30)


def on(alias):
    return pytest.mark.django_db(transaction=True, databases=[alias])


ALIASES = [
    pytest.param("default", id="sqlite", marks=on("default")),
    pytest.param(
        "postgres", id="postgresql", marks=[pytest.mark.postgres, on("postgres")]
    ),
]


class Recorder:
    """An async send target that records what reached it."""

    def __init__(self):
        self.sent = []

    async def __call__(self, item):
        self.sent.append(item)


@pytest.mark.parametrize("alias", ALIASES)
def test_send_inside_atomic_waits_for_commit(alias):
    record = Recorder()
    with transaction.atomic(using=alias):
        User.objects.using(alias).create(username="a")
        delivery.deliver_sync(None, record, ("tx",))
        assert record.sent == []
    assert record.sent == ["tx"]
    User.objects.using(alias).all().delete()


@pytest.mark.parametrize("alias", ALIASES)
def test_send_inside_rolled_back_atomic_is_dropped(alias):
    record = Recorder()
    try:
        with transaction.atomic(using=alias):
            delivery.deliver_sync(None, record, ("tx",))
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert record.sent == []


@pytest.mark.parametrize("alias", ALIASES)
def test_rolled_back_savepoint_drops_only_its_own_sends(alias):
    record = Recorder()
    with transaction.atomic(using=alias):
        delivery.deliver_sync(None, record, ("outer",))
        try:
            with transaction.atomic(using=alias):
                delivery.deliver_sync(None, record, ("inner",))
                raise RuntimeError("roll back the savepoint")
        except RuntimeError:
            pass
        delivery.deliver_sync(None, record, ("after",))
    assert record.sent == ["outer", "after"]


@pytest.mark.parametrize("alias", ALIASES)
def test_immediately_ignores_the_transaction(alias):
    record = Recorder()
    with transaction.atomic(using=alias):
        delivery.deliver_sync(None, record, ("now",), immediately=True)
        assert record.sent == ["now"]


async def observe(group):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return layer, channel


async def drain(layer, channel):
    seen = []
    while True:
        try:
            seen.append(await asyncio.wait_for(layer.receive(channel), 0.2))
        except TimeoutError:
            return seen


def without_correlation_id(message):
    return {key: value for key, value in message.items() if key != "correlation_id"}


class Poster(WebsocketConsumer):
    """Save a row and announce it, inside a transaction, the Channels way."""

    alias = "default"

    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data="before")
        with transaction.atomic(using=self.alias):
            User.objects.using(self.alias).create(username=text_data)
            async_to_sync(self.channel_layer.group_send)(
                "posts", {"type": "post", "name": text_data}
            )
            self.send(text_data="saved")
            if text_data == "fail":
                raise RuntimeError("roll back")
        self.send(text_data="after")


@pytest.mark.parametrize("alias", ALIASES)
async def test_sync_handler_sends_go_out_in_order_after_commit(alias):
    layer, channel = await observe("posts")
    communicator = WebsocketCommunicator(
        Poster.as_asgi(alias=alias), "/ws/", headers=[(b"x-request-id", b"req-7")]
    )
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="alice")
    assert [await communicator.receive_from() for _ in range(3)] == [
        "before",
        "saved",
        "after",
    ]
    # The first frame of the connection whose proxy named it req-7.
    assert await drain(layer, channel) == [
        {"type": "post", "name": "alice", "correlation_id": "req-7.1"}
    ]
    await communicator.disconnect()


@pytest.mark.parametrize("alias", ALIASES)
async def test_failing_handler_with_rolled_back_transaction_sends_nothing(alias):
    layer, channel = await observe("posts")
    communicator = WebsocketCommunicator(Poster.as_asgi(alias=alias), "/ws/")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="fail")
    with pytest.raises(RuntimeError, match="roll back"):
        await communicator.receive_from()
    assert await drain(layer, channel) == []
    assert not await User.objects.using(alias).filter(username="fail").aexists()


@on("default")
async def test_async_handler_group_sends_are_held_until_it_returns():
    layer, channel = await observe("news")
    release = asyncio.Event()

    class Announcer(AsyncWebsocketConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            await self.channel_layer.group_send("news", {"type": "n", "i": 1})
            await asend_to_group("news", {"type": "n", "i": 2})
            await release.wait()

    communicator = WebsocketCommunicator(Announcer.as_asgi(), "/ws/")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="go")
    assert await drain(layer, channel) == []
    release.set()
    assert [without_correlation_id(m) for m in await drain(layer, channel)] == [
        {"type": "n", "i": 1},
        {"type": "n", "i": 2},
    ]
    await communicator.disconnect()


@pytest.mark.parametrize("alias", ALIASES)
async def test_send_to_group_from_a_view_goes_out_after_commit(alias):
    layer, channel = await observe("orders")
    observed_inside = []

    def place_order(fail):
        with transaction.atomic(using=alias):
            User.objects.using(alias).create(username=f"buyer-{fail}")
            send_to_group("orders", {"type": "order", "fail": fail}, using=alias)
            send_to_channel(channel, {"type": "direct", "fail": fail}, using=alias)
            observed_inside.append(async_to_sync(drain)(layer, channel))
            if fail:
                raise RuntimeError("roll back")

    await sync_to_async(place_order)(False)
    assert await drain(layer, channel) == [
        {"type": "order", "fail": False},
        {"type": "direct", "fail": False},
    ]
    with pytest.raises(RuntimeError):
        await sync_to_async(place_order)(True)
    assert await drain(layer, channel) == []
    # Nothing was out while either transaction was open.
    assert observed_inside == [[], []]


def test_send_to_group_without_a_layer_is_a_clear_error(settings):
    settings.CHANNEL_LAYERS = {}
    with pytest.raises(Exception, match="No channel layer 'default'"):
        send_to_group("g", {"type": "x"})
