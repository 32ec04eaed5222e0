"""What the SQLite layer adds to the contract: a shared file, wake-ups, faults.

Two layer instances on one file stand for two processes (each has its own
process id, thread and wake-up socket); tests with real separate processes
are in tests/e2e/layers.
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from django_realtime.exceptions import ChannelFull, ChannelLayerError, GroupsExpired
from django_realtime.layers import ChannelLayerManager
from django_realtime.layers.sqlite import SQLiteChannelLayer

TIMEOUT = 5.0
QUIET = 0.3

MakeLayer = Callable[..., SQLiteChannelLayer]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[MakeLayer]:
    built: list[SQLiteChannelLayer] = []

    def make(**config: Any) -> SQLiteChannelLayer:
        config = {"path": tmp_path / "layer.sqlite3", **config}
        manager = ChannelLayerManager(
            {
                "default": {
                    "BACKEND": "django_realtime.layers.sqlite.SQLiteChannelLayer",
                    "CONFIG": config,
                }
            }
        )
        layer = manager["default"]
        assert isinstance(layer, SQLiteChannelLayer)
        built.append(layer)
        return layer

    yield make
    for layer in built:
        await layer.close()


async def receive(layer: SQLiteChannelLayer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await layer.receive(channel)


async def assert_nothing_arrives(layer: SQLiteChannelLayer, channel: str) -> None:
    try:
        async with asyncio.timeout(QUIET):
            message = await layer.receive(channel)
    except TimeoutError:
        return
    pytest.fail(f"Expected no message on {channel!r}, got {message!r}.")


async def test_a_waiting_receiver_is_woken_without_waiting_for_the_poll(
    make: MakeLayer,
) -> None:
    receiver, sender = make(poll_interval=60), make(poll_interval=60)
    channel = await receiver.new_channel()
    waiting = asyncio.create_task(receive(receiver, channel))
    await asyncio.sleep(0.05)  # let the receive start waiting

    await sender.send(channel, {"type": "wake.up"})

    assert await waiting == {"type": "wake.up"}


async def test_a_worker_waiting_on_a_normal_channel_is_woken(
    make: MakeLayer,
) -> None:
    worker, sender = make(poll_interval=60), make(poll_interval=60)
    waiting = asyncio.create_task(receive(worker, "jobs"))
    await asyncio.sleep(0.05)

    await sender.send("jobs", {"type": "job.run"})

    assert await waiting == {"type": "job.run"}


async def test_group_send_reaches_members_of_both_layers(make: MakeLayer) -> None:
    first, second = make(poll_interval=60), make(poll_interval=60)
    mine, theirs = await first.new_channel(), await second.new_channel()
    await first.group_add("room", mine)
    await second.group_add("room", theirs)

    await first.group_send("room", {"type": "hello"})

    assert await receive(first, mine) == {"type": "hello"}
    assert await receive(second, theirs) == {"type": "hello"}


async def test_messages_on_a_normal_channel_outlive_the_sending_layer(
    make: MakeLayer,
) -> None:
    sender = make()
    await sender.send("jobs", {"type": "job.run", "n": 1})
    await sender.close()

    assert await receive(make(), "jobs") == {"type": "job.run", "n": 1}


async def test_a_locked_file_fails_the_send_clearly_and_writes_nothing(
    make: MakeLayer, tmp_path: Path
) -> None:
    layer = make(timeout=0.3)
    await layer.flush()  # create the file and its tables
    other = sqlite3.connect(tmp_path / "layer.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ChannelLayerError, match=r"Could not write.*locked"):
            await layer.send("jobs", {"type": "lost"})
    finally:
        other.execute("COMMIT")
        other.close()

    await assert_nothing_arrives(layer, "jobs")
    await layer.send("jobs", {"type": "after.unlock"})
    assert await receive(layer, "jobs") == {"type": "after.unlock"}


async def test_a_send_waits_for_a_lock_held_less_than_the_timeout(
    make: MakeLayer, tmp_path: Path
) -> None:
    layer = make(timeout=5)
    await layer.flush()
    other = sqlite3.connect(tmp_path / "layer.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    sending = asyncio.create_task(layer.send("jobs", {"type": "delayed"}))
    await asyncio.sleep(0.2)
    assert not sending.done()
    other.execute("COMMIT")
    other.close()

    async with asyncio.timeout(TIMEOUT):
        await sending
    assert await receive(layer, "jobs") == {"type": "delayed"}


async def test_a_message_that_is_not_plain_data_is_refused(make: MakeLayer) -> None:
    layer = make()

    with pytest.raises(TypeError, match="date"):
        await layer.send("jobs", {"type": "when", "at": datetime.date(2026, 1, 1)})

    await assert_nothing_arrives(layer, "jobs")


async def test_messages_keep_bytes_and_nested_values(make: MakeLayer) -> None:
    layer = make()
    message = {"type": "ws", "bytes": b"\x00\xff", "meta": [1, {"a": None}]}

    await layer.send("jobs", message)

    assert await receive(layer, "jobs") == message


async def test_close_ends_the_layer_thread_and_the_layer_works_again(
    make: MakeLayer,
) -> None:
    layer = make()
    await layer.send("jobs", {"type": "one"})
    names = {thread.name for thread in threading.enumerate()}
    assert f"sqlite-layer-{layer.process_id}" in names

    await layer.close()

    names = {thread.name for thread in threading.enumerate()}
    assert f"sqlite-layer-{layer.process_id}" not in names
    assert await receive(layer, "jobs") == {"type": "one"}


async def test_a_channel_of_another_process_is_full_for_every_sender(
    make: MakeLayer,
) -> None:
    reader, sender = make(capacity=2), make(capacity=2)
    channel = await reader.new_channel()
    await sender.send(channel, {"type": "one"})
    await reader.send(channel, {"type": "two"})

    with pytest.raises(ChannelFull):
        await sender.send(channel, {"type": "three"})

    assert await receive(reader, channel) == {"type": "one"}
    await sender.send(channel, {"type": "fits.again"})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_channel_found_holding_expired_messages_leaves_its_groups(
    make: MakeLayer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    layer = make(expiry=10, clock=clock)
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    await layer.group_send("room", {"type": "unread"})
    clock.now += 11

    with pytest.raises(GroupsExpired) as raised:
        await receive(layer, channel)

    assert raised.value.groups == ("room",)
    assert layer.stats.expired_messages == 1
    assert any("expired unread" in r.getMessage() for r in caplog.records)
    await layer.group_send("room", {"type": "after.eviction"})
    await layer.send(channel, {"type": "direct"})
    assert await receive(layer, channel) == {"type": "direct"}


async def test_a_file_too_deep_for_socket_names_still_wakes_receivers(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "layer.sqlite3"
    receiver = SQLiteChannelLayer(path=path, poll_interval=60)
    sender = SQLiteChannelLayer(path=path, poll_interval=60)
    try:
        channel = await receiver.new_channel()
        waiting = asyncio.create_task(receive(receiver, channel))
        await asyncio.sleep(0.05)

        await sender.send(channel, {"type": "deep"})

        assert await waiting == {"type": "deep"}
    finally:
        await receiver.close()
        await sender.close()


async def test_a_file_in_a_missing_directory_fails_each_call_clearly(
    tmp_path: Path,
) -> None:
    layer = SQLiteChannelLayer(path=tmp_path / "missing" / "layer.sqlite3")
    try:
        with pytest.raises(ChannelLayerError, match="unable to open"):
            await layer.send("jobs", {"type": "lost"})
        (tmp_path / "missing").mkdir()
        await layer.send("jobs", {"type": "kept"})
        assert await receive(layer, "jobs") == {"type": "kept"}
    finally:
        await layer.close()


async def test_receiving_on_a_file_in_a_missing_directory_fails_clearly() -> None:
    # A short path, so that the wake-up sockets go beside the file.
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        missing = Path(directory) / "missing"
        layer = SQLiteChannelLayer(path=missing / "layer.sqlite3")
        try:
            with pytest.raises(ChannelLayerError, match="must exist"):
                await layer.new_channel()
            assert not missing.exists()
        finally:
            await layer.close()
