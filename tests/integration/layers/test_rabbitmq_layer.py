"""The RabbitMQ layer beyond the contract: its names, its holders, its checks.

Several layer objects in one test stand for several processes: each has a
process id and a queue of its own on the real broker.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.checks import run_checks
from django.test import override_settings
from pamqp import decode, encode

from django_realtime.exceptions import ChannelLayerError
from django_realtime.layers._core import LayerStats
from django_realtime.layers.rabbitmq import RabbitMQChannelLayer
from django_realtime.layers.rabbitmq._inbox import Inbox
from django_realtime.layers.rabbitmq._members import Binding, Memberships
from django_realtime.layers.rabbitmq._names import (
    broker_address,
    now_ms,
    owner_of,
    sent_at,
)
from tests.integration.layers.conftest import RABBITMQ_URL, rabbitmq_config

# The broker is shared: under pytest-xdist these tests run on one worker.
pytestmark = pytest.mark.xdist_group("rabbitmq")

TIMEOUT = 5.0
QUIET = 0.3
BACKEND = "django_realtime.layers.rabbitmq.RabbitMQChannelLayer"


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., RabbitMQChannelLayer]]:
    """Make layers ("processes") sharing one prefix; close them after."""
    prefix = f"drt{uuid.uuid4().hex[:8]}."
    config = rabbitmq_config(prefix)
    made: list[RabbitMQChannelLayer] = []

    def make(**options: Any) -> RabbitMQChannelLayer:
        layer = RabbitMQChannelLayer(**{**config, **options})
        made.append(layer)
        return layer

    yield make
    for layer in made:
        await layer.close()


async def receive(layer: RabbitMQChannelLayer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await layer.receive(channel)


async def nothing_arrives(layer: RabbitMQChannelLayer, channel: str) -> bool:
    try:
        async with asyncio.timeout(QUIET):
            await layer.receive(channel)
    except TimeoutError:
        return True
    return False


# Pure parts


def test_a_new_channel_name_tells_its_owner_and_other_names_do_not() -> None:
    assert owner_of("specific.rmq.0123456789ab!7") == "0123456789ab"
    assert owner_of("rmq.0123456789ab!") == "0123456789ab"
    assert owner_of("jobs") is None
    assert owner_of("specific.other!7") is None
    assert owner_of("specific.rmq.0123!7") is None


def test_broker_address_drops_credentials_and_refuses_other_schemes() -> None:
    assert broker_address("amqp://u:secret@mq.example:5673/v") == (
        "amqp://mq.example:5673/v"
    )
    assert broker_address("amqps://mq.example") == "amqps://mq.example:5671/"
    with pytest.raises(ValueError, match="amqp://user:password@host"):
        broker_address("redis://127.0.0.1:6379")
    with pytest.raises(TypeError):
        broker_address(None)


def test_the_send_time_survives_amqp_headers_to_the_millisecond() -> None:
    # AMQP tables carry Python floats as 32-bit floats: a minute off today.
    sent = now_ms()
    _, headers = decode.field_table(encode.field_table({"t": sent}))

    assert abs(sent_at(headers) - sent / 1000) < 0.001
    assert abs(sent_at({}) - time.time()) < 1


def test_memberships_replace_renewed_joins_and_expire_on_the_holders_clock() -> None:
    members = Memberships()
    assert members.join("room", "a", "j1", until=10.0) == []
    assert members.join("room", "a", "j2", until=20.0) == [Binding("room", "a", "j1")]
    assert members.join("room", "b", "j3", until=12.0) == []

    assert members.live("room", now=11.0) == (["a", "b"], [])
    assert members.live("room", now=15.0) == (["a"], [Binding("room", "b", "j3")])
    assert members.leave("room", "a") == [Binding("room", "a", "j2")]
    assert members.live("room", now=15.0) == ([], [])
    assert len(members) == 0


def test_the_inbox_sweeps_expired_messages_that_nobody_came_for() -> None:
    stats = LayerStats()
    inbox = Inbox(stats)
    acked: list[bool] = []
    inbox.put("gone!1", time.time() - 1, {"type": "stale"})
    inbox.put("gone!2", time.time() - 1, {"type": "stale"}, ack=acked.append)
    inbox.put("alive!1", time.time() + 60, {"type": "fresh"})

    inbox._next_sweep = 0.0  # the sweep is due
    inbox.put("alive!1", time.time() + 60, {"type": "fresh"})

    assert stats.expired_messages == 2
    assert acked == [False]  # taken off the broker, not given back
    assert inbox.discard("gone!1") == 0
    assert inbox.discard("alive!1") == 2


# On the broker


async def test_group_add_from_another_process_reaches_the_owners_channel(
    make: Callable[..., RabbitMQChannelLayer],
) -> None:
    owner, adder, sender = make(), make(), make()
    channel = await owner.new_channel()

    await adder.group_add("room", channel)
    await sender.group_send("room", {"type": "hello"})
    assert await receive(owner, channel) == {"type": "hello"}

    await adder.group_discard("room", channel)
    await sender.group_send("room", {"type": "after.discard"})
    assert await nothing_arrives(owner, channel)


async def test_a_normal_channel_added_by_two_processes_gets_each_message_once(
    make: Callable[..., RabbitMQChannelLayer],
) -> None:
    first, second, worker = make(), make(), make()
    await first.group_add("jobs", "worker.queue")
    await second.group_add("jobs", "worker.queue")

    await first.group_send("jobs", {"type": "job", "n": 1})

    assert await receive(worker, "worker.queue") == {"type": "job", "n": 1}
    assert await nothing_arrives(worker, "worker.queue")


async def test_a_process_that_stops_receiving_gives_its_held_message_back(
    make: Callable[..., RabbitMQChannelLayer],
) -> None:
    first, second = make(), make()
    first._readers._linger = 0.1  # instead of seconds
    await first.send("jobs", {"type": "job", "n": 1})
    await first.send("jobs", {"type": "job", "n": 2})
    # The broker hands the first process the next message with this one.
    assert await receive(first, "jobs") == {"type": "job", "n": 1}

    # Once it has not received for a while, the other process gets it.
    assert await receive(second, "jobs") == {"type": "job", "n": 2}


async def test_a_flush_in_another_process_empties_groups_without_breaking_this_one(
    make: Callable[..., RabbitMQChannelLayer],
) -> None:
    this, other = make(), make()
    channel = await this.new_channel()
    await this.group_add("room", channel)

    await other.flush()  # deletes the groups exchange, with every binding
    await this.group_send("room", {"type": "to.nobody"})
    await this.group_add("room", channel)
    await this.group_send("room", {"type": "after.flush"})

    assert await receive(this, channel) == {"type": "after.flush"}


async def test_processes_configured_with_other_capacities_are_told_so(
    make: Callable[..., RabbitMQChannelLayer],
) -> None:
    first, second = make(capacity=10), make(capacity=20)
    await first.send("jobs", {"type": "job"})

    with pytest.raises(ChannelLayerError, match="same capacity and expiry"):
        await second.send("jobs", {"type": "job"})
    # The broker closed the channel that asked; the next operation opens
    # another.
    await second.send("other", {"type": "job"})
    assert await receive(second, "other") == {"type": "job"}


async def test_a_full_process_local_channel_drops_with_a_warning(
    make: Callable[..., RabbitMQChannelLayer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    owner, sender = make(capacity=2), make(capacity=2)
    channel, marker = await owner.new_channel(), await owner.new_channel()
    for n in range(3):
        await sender.send(channel, {"type": "fill", "n": n})
    # One sender's messages reach the owner's queue in order: once the
    # marker is in, the owner has met the third (and dropped it, untold).
    await sender.send(marker, {"type": "marker"})
    await receive(owner, marker)

    assert owner.stats.dropped_messages == 1
    assert [(await receive(owner, channel))["n"] for _ in range(2)] == [0, 1]
    assert await nothing_arrives(owner, channel)
    assert any("is full" in record.getMessage() for record in caplog.records)


async def test_messages_to_a_closed_process_are_dropped_without_error(
    make: Callable[..., RabbitMQChannelLayer],
) -> None:
    owner, sender = make(), make()
    channel = await owner.new_channel()
    await owner.close()
    await sender.group_add("room", channel)  # its queue may still be there

    await sender.send(f"specific.rmq.{'0' * 12}!1", {"type": "nobody.home"})


async def test_close_ends_every_task_left_on_the_connections_loop(
    make: Callable[..., RabbitMQChannelLayer],
) -> None:
    # aiormq keeps tasks of its own (a connection's reader and writer) that
    # the link does not know of; left pending on a closed loop, they fail
    # when collected ("Event loop is closed").
    layer = make()
    await layer.new_channel()

    async def start_one() -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(asyncio.sleep(3600))

    left = await layer._link.call(start_one())
    await layer.close()

    assert left.cancelled()


async def test_a_layer_takes_its_configuration_from_channel_layers() -> None:
    with pytest.raises(ValueError, match="url must look like"):
        RabbitMQChannelLayer(url="http://127.0.0.1:5672/")
    with pytest.raises(TypeError, match="prefix"):
        RabbitMQChannelLayer(prefix=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group_expiry"):
        RabbitMQChannelLayer(group_expiry=0)


def connections_named(name: str) -> int:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH: connections cannot be listed.")
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return sum(1 for line in listed.splitlines() if name in line)


async def test_async_to_sync_group_send_in_a_loop_leaks_no_connections_or_threads(
    make: Callable[..., RabbitMQChannelLayer],
) -> None:
    layer = make()
    receiver = make()
    channel = await receiver.new_channel()
    await receiver.group_add("room", channel)
    name = f"django_realtime {layer.prefix}process.{layer.process_id}"

    def shell() -> tuple[int, int]:
        send = async_to_sync(layer.group_send)
        send("room", {"type": "from.shell", "n": 0})
        threads = threading.active_count()
        for n in range(1, 50):
            send("room", {"type": "from.shell", "n": n})
        return threads, threading.active_count()

    before, after = await asyncio.to_thread(shell)

    assert before == after
    assert [(await receive(receiver, channel))["n"] for _ in range(50)] == list(
        range(50)
    )
    assert await asyncio.to_thread(connections_named, name) == 1
    await layer.close()
    assert await asyncio.to_thread(connections_named, name) == 0


# System checks


def rabbitmq_ids(url: object) -> list[str]:
    layers = {"default": {"BACKEND": BACKEND, "CONFIG": {"url": url}}}
    with override_settings(CHANNEL_LAYERS=layers):
        return sorted(
            message.id
            for message in run_checks(tags=["realtime"])
            if message.id and message.id.startswith("django_realtime.rabbitmq.")
        )


def test_a_reachable_broker_passes_the_checks() -> None:
    rabbitmq_config("unused.")  # skip if the broker is down
    assert rabbitmq_ids(RABBITMQ_URL) == []


def test_a_bad_url_is_an_error() -> None:
    assert rabbitmq_ids("localhost:5672") == ["django_realtime.rabbitmq.E001"]
    assert rabbitmq_ids(None) == ["django_realtime.rabbitmq.E001"]


def test_an_unreachable_broker_is_a_warning() -> None:
    # Port 1 on loopback: nothing listens there.
    assert rabbitmq_ids("amqp://guest:guest@127.0.0.1:1/") == [
        "django_realtime.rabbitmq.W001"
    ]
