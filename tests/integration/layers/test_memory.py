"""What the in-memory layer adds to the contract: errors, stats, logs, loops."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from django_realtime.exceptions import (
    InvalidChannelName,
    InvalidMessageError,
)
from django_realtime.layers import BaseChannelLayer, InMemoryChannelLayer
from tests.integration.layers.conftest import FakeClock

TIMEOUT = 5.0


async def receive(layer: InMemoryChannelLayer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await layer.receive(channel)


# Validation


async def test_send_rejects_a_message_that_is_not_a_dict() -> None:
    layer = InMemoryChannelLayer()

    with pytest.raises(InvalidMessageError, match="must be dicts, got list"):
        await layer.send("chan", ["type", "x"])  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="must be dicts, got str"):
        await layer.group_send("room", "hello")  # type: ignore[arg-type]


async def test_send_rejects_the_reserved_routing_key() -> None:
    layer = InMemoryChannelLayer()

    with pytest.raises(InvalidMessageError, match="__asgi_channel__"):
        await layer.send("chan", {"type": "x", "__asgi_channel__": "chan"})


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("has space", "may contain only ASCII letters"),
        ("x" * 100, "shorter than 100 characters, got 100"),
        (b"bytes", "must be strings, got bytes"),
    ],
)
async def test_invalid_channel_names_say_what_is_wrong(name: Any, error: str) -> None:
    layer = InMemoryChannelLayer()

    with pytest.raises(InvalidChannelName, match=error):
        await layer.send(name, {"type": "x"})


async def test_new_channel_rejects_a_prefix_with_a_bang() -> None:
    layer = InMemoryChannelLayer()

    with pytest.raises(InvalidChannelName):
        await layer.new_channel("bad!")


async def test_new_channel_names_follow_the_inmemory_pattern() -> None:
    name = await InMemoryChannelLayer().new_channel()

    assert re.fullmatch(r"specific\.inmemory![0-9a-f]+", name), name


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"capacity": 0}, "capacity must be a positive integer, got 0"),
        ({"capacity": True}, "capacity must be a positive integer"),
        ({"expiry": -1}, "expiry must be positive, got -1"),
        ({"expiry": "60"}, "expiry must be a number of seconds"),
        ({"group_expiry": 0}, "group_expiry must be positive"),
        ({"group_expiry": None}, "group_expiry must be a number of seconds"),
        ({"channel_capacity": {"a*": 0}}, r"channel_capacity\['a\*'\]"),
        ({"channel_capacity": {3: 5}}, "glob strings or compiled regular"),
    ],
)
def test_bad_configuration_is_rejected_with_the_value(
    config: dict[str, Any], error: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        InMemoryChannelLayer(**config)


def test_channel_capacity_accepts_compiled_regular_expressions() -> None:
    layer = InMemoryChannelLayer(
        capacity=10, channel_capacity={re.compile(r"^http\."): 2, "http.*": 3}
    )

    assert layer.get_capacity("http.request") == 2
    assert layer.get_capacity("websocket.send") == 10


# Delivery


async def test_group_send_over_capacity_logs_one_warning_with_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer(capacity=1)
    members = [f"member{n}" for n in range(1000)]
    for channel in members:
        await layer.group_add("room", channel)
    for channel in members[:3]:
        await layer.send(channel, {"type": "filler"})

    with caplog.at_level(logging.WARNING, logger="django_realtime.layers.memory"):
        await layer.group_send("room", {"type": "chat.message"})

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        warnings[0]
        .getMessage()
        .startswith(
            "group_send to 'room': 3 of 1000 members were full; message dropped"
        )
    )
    assert layer.stats.dropped_messages == 3
    assert layer.stats.sent == 3 + 997


async def test_group_send_within_capacity_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer()
    await layer.group_add("room", "a")

    with caplog.at_level(logging.DEBUG, logger="django_realtime.layers.memory"):
        await layer.group_send("room", {"type": "chat.message"})

    assert caplog.records == []


async def test_expired_messages_are_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    layer = InMemoryChannelLayer(expiry=10, clock=clock)
    await layer.send("chan", {"type": "stale"})
    clock.now += 11
    caplog.clear()  # the lonely-sender warning of the first send

    with caplog.at_level(logging.WARNING, logger="django_realtime.layers.memory"):
        await layer.send("chan", {"type": "fresh"})

    assert [r.getMessage() for r in caplog.records] == [
        "1 messages expired unread on 1 channels (expiry is 10s); "
        "0 group memberships ended."
    ]
    assert layer.stats.expired_messages == 1
    assert await receive(layer, "chan") == {"type": "fresh"}


async def test_receivers_get_their_own_copy_of_a_group_message() -> None:
    layer = InMemoryChannelLayer()
    await layer.group_add("room", "a")
    await layer.group_add("room", "b")
    message = {"type": "chat.message", "text": "hi"}
    await layer.group_send("room", message)
    message["text"] = "changed by the sender"

    first = await receive(layer, "a")
    first["text"] = "changed by a receiver"

    assert await receive(layer, "b") == {"type": "chat.message", "text": "hi"}


async def test_waiting_receivers_are_served_in_arrival_order() -> None:
    layer = InMemoryChannelLayer()
    first = asyncio.create_task(layer.receive("chan"))
    second = asyncio.create_task(layer.receive("chan"))
    await asyncio.sleep(0)

    await layer.send("chan", {"type": "n", "n": 1})
    await layer.send("chan", {"type": "n", "n": 2})

    async with asyncio.timeout(TIMEOUT):
        assert (await first)["n"] == 1
        assert (await second)["n"] == 2


async def test_a_woken_receiver_cancelled_before_running_passes_the_message_on() -> (
    None
):
    layer = InMemoryChannelLayer()
    first = asyncio.create_task(layer.receive("chan"))
    second = asyncio.create_task(layer.receive("chan"))
    await asyncio.sleep(0)

    await layer.send("chan", {"type": "precious"})  # wakes ``first``
    first.cancel()  # ...which is cancelled before it takes the message

    with pytest.raises(asyncio.CancelledError):
        await first
    async with asyncio.timeout(TIMEOUT):
        assert await second == {"type": "precious"}


async def test_cancelled_receivers_leave_no_waiters_behind() -> None:
    layer = InMemoryChannelLayer()
    for _ in range(10):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await layer.receive("idle")

    assert layer._waiters == {}


def test_the_layer_survives_the_event_loop_of_a_waiting_receiver() -> None:
    layer = InMemoryChannelLayer()
    old_loop = asyncio.new_event_loop()
    stranded = old_loop.create_task(layer.receive("chan"))
    old_loop.run_until_complete(asyncio.sleep(0))
    old_loop.close()  # as a test runner may, with the receive still waiting

    async def next_test() -> dict[str, Any]:
        await layer.send("chan", {"type": "for.the.new.loop"})
        return await receive(layer, "chan")

    assert asyncio.run(next_test()) == {"type": "for.the.new.loop"}
    assert not stranded.done()
    stranded.get_coro().close()


async def test_flush_keeps_waiting_receivers_waiting() -> None:
    layer = InMemoryChannelLayer()
    waiting = asyncio.create_task(layer.receive("chan"))
    await asyncio.sleep(0)

    await layer.flush()
    await layer.send("chan", {"type": "after.flush"})

    async with asyncio.timeout(TIMEOUT):
        assert await waiting == {"type": "after.flush"}


async def test_stats_count_sent_and_received_messages() -> None:
    layer = InMemoryChannelLayer()
    await layer.send("chan", {"type": "a"})
    await layer.send("chan", {"type": "b"})
    await receive(layer, "chan")

    assert (layer.stats.sent, layer.stats.received) == (2, 1)


async def test_close_does_nothing_and_the_layer_still_works() -> None:
    layer = InMemoryChannelLayer()

    await layer.close()
    await layer.send("chan", {"type": "a"})

    assert await receive(layer, "chan") == {"type": "a"}


# The base class


class _Bare(BaseChannelLayer):
    pass


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("send", ("chan", {})),
        ("receive", ("chan",)),
        ("new_channel", ()),
        ("group_add", ("room", "chan")),
        ("group_discard", ("room", "chan")),
        ("group_send", ("room", {})),
        ("flush", ()),
    ],
)
async def test_the_base_class_names_what_a_layer_does_not_implement(
    method: str, args: tuple[Any, ...]
) -> None:
    with pytest.raises(NotImplementedError, match="_Bare does not implement"):
        await getattr(_Bare(), method)(*args)


def test_base_class_helpers_follow_channels_names() -> None:
    layer = _Bare()

    assert layer.non_local_name("specific.abc!xyz") == "specific.abc!"
    assert layer.non_local_name("plain") == "plain"
    assert layer.valid_channel_names(["a", "b!c"])
    assert layer.require_valid_channel_name("specific.abc!", receive=True)
    with pytest.raises(InvalidChannelName, match="must end at the '!'"):
        layer.require_valid_channel_name("specific.abc!xyz", receive=True)
    with pytest.raises(InvalidChannelName, match="non-empty list"):
        layer.valid_channel_names([])


@pytest.mark.parametrize(
    "send",
    [
        lambda layer: layer.send("worker", {"type": "job"}),
        lambda layer: layer.group_send("room", {"type": "chat.message"}),
    ],
)
async def test_a_send_where_nothing_ever_received_warns_once_with_the_fix(
    caplog: pytest.LogCaptureFixture, send: Any
) -> None:
    # As from manage.py shell: the message can reach no other process.
    layer = InMemoryChannelLayer()

    with caplog.at_level(logging.WARNING, logger="django_realtime.layers.memory"):
        await send(layer)
        await send(layer)

    # Only this logger's: a garbage-collected task of an earlier test may log.
    [record] = [r for r in caplog.records if r.name == "django_realtime.layers.memory"]
    assert "nothing ever received through the in-memory channel layer" in (
        record.getMessage()
    )
    assert "SQLite layer" in record.getMessage()


async def test_a_process_with_consumers_gets_no_lonely_sender_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()  # as a consumer does

    with caplog.at_level(logging.WARNING, logger="django_realtime.layers.memory"):
        await layer.group_send("room", {"type": "chat.message"})
        await layer.send(channel, {"type": "direct"})

    assert [r for r in caplog.records if r.name.startswith("django_realtime")] == []
