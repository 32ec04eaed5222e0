"""The channel layer contract, run against every layer in conftest.LAYERS.

Each test body runs unchanged on the in-memory layer, django_realtime's
Redis layer, and channels-redis' RedisChannelLayer and
RedisPubSubChannelLayer. Where a layer lacks a feature
by design, the test is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from django_realtime.exceptions import ChannelFull
from tests.integration.layers.conftest import LayerCase

TIMEOUT = 5.0
# How long to wait to be satisfied that no message is coming.
QUIET = 0.2

CHANNEL_NAME = re.compile(r"^[a-zA-Z\d\-_.]+(![\d\w\-_.]*)?$")


async def receive(layer: Any, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        message: dict[str, Any] = await layer.receive(channel)
        return message


async def assert_nothing_arrives(layer: Any, channel: str) -> None:
    """Check that no message comes; on pub/sub this unsubscribes the channel."""
    try:
        async with asyncio.timeout(QUIET):
            message = await layer.receive(channel)
    except TimeoutError:
        return
    pytest.fail(f"Expected no message on {channel!r}, got {message!r}.")


# Channels


async def test_send_then_receive_returns_the_message(case: LayerCase) -> None:
    channel = await case.channel()
    await case.layer.send(channel, {"type": "chat.message", "text": "hello"})

    assert await receive(case.layer, channel) == {
        "type": "chat.message",
        "text": "hello",
    }


async def test_messages_on_one_channel_arrive_in_order(case: LayerCase) -> None:
    channel = await case.channel()
    for n in range(20):
        await case.layer.send(channel, {"type": "count", "n": n})

    received = [(await receive(case.layer, channel))["n"] for _ in range(20)]

    assert received == list(range(20))


async def test_messages_to_one_channel_do_not_reach_another(case: LayerCase) -> None:
    first, second = await case.channel("first"), await case.channel("second")
    await case.layer.send(first, {"type": "for.first"})
    await case.layer.send(second, {"type": "for.second"})

    assert (await receive(case.layer, second))["type"] == "for.second"
    assert (await receive(case.layer, first))["type"] == "for.first"


async def test_new_channel_returns_unique_valid_names(case: LayerCase) -> None:
    names = [await case.layer.new_channel() for _ in range(100)]

    assert len(set(names)) == 100
    for name in names:
        assert CHANNEL_NAME.match(name), name
        assert len(name) < 100


async def test_new_channel_names_are_process_local(case: LayerCase) -> None:
    case.require("process_local_names")

    name = await case.layer.new_channel("room.")

    assert name.startswith("room.")
    assert "!" in name


async def test_new_channel_name_receives_messages(case: LayerCase) -> None:
    channel = await case.layer.new_channel()
    await case.layer.send(channel, {"type": "direct"})

    assert await receive(case.layer, channel) == {"type": "direct"}


async def test_concurrent_receivers_each_get_a_different_message(
    case: LayerCase,
) -> None:
    channel = await case.channel("work")
    receivers = [asyncio.create_task(case.layer.receive(channel)) for _ in range(5)]
    for n in range(5):
        await case.layer.send(channel, {"type": "job", "n": n})

    async with asyncio.timeout(TIMEOUT):
        received = await asyncio.gather(*receivers)

    assert sorted(message["n"] for message in received) == [0, 1, 2, 3, 4]


async def test_cancelled_receive_loses_no_message(case: LayerCase) -> None:
    case.require("cancel_safe_receive")
    channel = await case.channel()
    waiting = asyncio.create_task(case.layer.receive(channel))
    await asyncio.sleep(0)  # let the receive start waiting
    await case.layer.send(channel, {"type": "precious"})
    waiting.cancel()
    try:
        received = [await waiting]
    except asyncio.CancelledError:
        received = []

    if not received:
        received.append(await receive(case.layer, channel))

    assert received == [{"type": "precious"}]
    await assert_nothing_arrives(case.layer, channel)


async def test_message_sent_after_a_cancelled_receive_is_received(
    case: LayerCase,
) -> None:
    case.require("cancel_safe_receive")
    channel = await case.channel()
    waiting = asyncio.create_task(case.layer.receive(channel))
    await asyncio.sleep(0)  # let the receive start waiting
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    await case.layer.send(channel, {"type": "after.cancel"})

    assert await receive(case.layer, channel) == {"type": "after.cancel"}


# Groups


async def test_group_send_reaches_every_member(case: LayerCase) -> None:
    members = [await case.channel(f"member{n}") for n in range(3)]
    for channel in members:
        await case.layer.group_add("room", channel)

    await case.layer.group_send("room", {"type": "chat.message", "text": "hi"})

    for channel in members:
        assert await receive(case.layer, channel) == {
            "type": "chat.message",
            "text": "hi",
        }


async def test_group_send_wakes_receivers_already_waiting(case: LayerCase) -> None:
    members = [await case.channel(f"member{n}") for n in range(3)]
    for channel in members:
        await case.layer.group_add("room", channel)
    waiting = [asyncio.create_task(case.layer.receive(ch)) for ch in members]
    await asyncio.sleep(0)  # let the receives start waiting

    await case.layer.group_send("room", {"type": "wake.up"})

    async with asyncio.timeout(TIMEOUT):
        assert await asyncio.gather(*waiting) == [{"type": "wake.up"}] * 3


async def test_group_discard_stops_delivery_to_that_channel(case: LayerCase) -> None:
    stays, leaves = await case.channel("stays"), await case.channel("leaves")
    await case.layer.group_add("room", stays)
    await case.layer.group_add("room", leaves)

    await case.layer.group_discard("room", leaves)
    await case.layer.group_send("room", {"type": "after.discard"})

    assert await receive(case.layer, stays) == {"type": "after.discard"}
    await assert_nothing_arrives(case.layer, leaves)


async def test_group_discard_of_a_non_member_does_nothing(case: LayerCase) -> None:
    channel = await case.channel()

    await case.layer.group_discard("nobody-here", channel)


async def test_group_send_to_an_empty_group_does_nothing(case: LayerCase) -> None:
    await case.layer.group_send("empty", {"type": "into.the.void"})


async def test_group_send_reaches_many_members(case: LayerCase) -> None:
    members = [await case.layer.new_channel() for _ in range(500)]
    for channel in members:
        await case.layer.group_add("crowd", channel)

    await case.layer.group_send("crowd", {"type": "broadcast", "n": 1})

    for channel in members:
        assert await receive(case.layer, channel) == {"type": "broadcast", "n": 1}


async def test_flush_drops_queued_messages_and_groups(case: LayerCase) -> None:
    channel = await case.channel()
    await case.layer.send(channel, {"type": "before.flush"})
    await case.layer.group_add("room", channel)

    await case.layer.flush()
    await case.layer.group_send("room", {"type": "to.flushed.group"})

    await assert_nothing_arrives(case.layer, channel)


# Capacity


async def test_send_to_a_full_channel_raises_channel_full(case: LayerCase) -> None:
    case.require("capacity")
    layer = case.make(capacity=3)
    channel = await case.channel(layer=layer)
    for n in range(3):
        await layer.send(channel, {"type": "fill", "n": n})

    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "one.too.many"})

    assert (await receive(layer, channel))["n"] == 0
    await layer.send(channel, {"type": "fits.again"})


async def test_channel_capacity_patterns_override_the_default(
    case: LayerCase,
) -> None:
    case.require("capacity")
    layer = case.make(capacity=5, channel_capacity={"small.*": 1})
    small, large = (
        await case.channel("small", layer),
        await case.channel("large", layer),
    )
    await layer.send(small, {"type": "first"})
    for n in range(5):
        await layer.send(large, {"type": "fill", "n": n})

    with pytest.raises(ChannelFull):
        await layer.send(small, {"type": "second"})
    with pytest.raises(ChannelFull):
        await layer.send(large, {"type": "sixth"})


async def test_group_send_skips_full_members_and_reports_them(
    case: LayerCase, caplog: pytest.LogCaptureFixture
) -> None:
    case.require("capacity")
    caplog.set_level(logging.INFO)
    layer = case.make(capacity=1)
    full, free = await case.channel("full", layer), await case.channel("free", layer)
    await layer.group_add("room", full)
    await layer.group_add("room", free)
    await layer.send(full, {"type": "already.there"})

    await layer.group_send("room", {"type": "broadcast"})

    assert await receive(layer, free) == {"type": "broadcast"}
    assert await receive(layer, full) == {"type": "already.there"}
    await assert_nothing_arrives(layer, full)
    reports = [
        record
        for record in caplog.records
        if "room" in record.getMessage() and record.levelno >= logging.INFO
    ]
    assert reports, "group_send dropped a message without logging it"
    assert "1 of 2" in reports[0].getMessage()


# Expiry


async def test_expired_messages_are_never_delivered(case: LayerCase) -> None:
    case.require("expiry")
    expiry = case.spec.short_expiry
    layer = case.make(expiry=expiry)
    channel = await case.channel(layer=layer)
    await layer.send(channel, {"type": "stale"})

    await case.advance(expiry + 0.1)
    await layer.send(channel, {"type": "fresh"})

    assert await receive(layer, channel) == {"type": "fresh"}
    await assert_nothing_arrives(layer, channel)


async def test_group_memberships_expire(case: LayerCase) -> None:
    case.require("group_expiry")
    group_expiry = case.spec.short_expiry
    layer = case.make(group_expiry=group_expiry)
    channel = await case.channel(layer=layer)
    await layer.group_add("room", channel)

    await case.advance(group_expiry + 0.1)
    await layer.group_send("room", {"type": "too.late"})

    await assert_nothing_arrives(layer, channel)


async def test_group_add_again_renews_the_membership(case: LayerCase) -> None:
    case.require("group_expiry")
    # Each wait is shorter than the expiry by as much as a loaded machine may
    # add to it; the two together are longer.
    layer = case.make(group_expiry=1)
    channel = await case.channel(layer=layer)
    await layer.group_add("room", channel)
    await case.advance(0.6)
    await layer.group_add("room", channel)

    await case.advance(0.6)
    await layer.group_send("room", {"type": "still.here"})

    assert await receive(layer, channel) == {"type": "still.here"}


# Names

BAD_CHANNEL_NAMES = ["", "has space", "x" * 100, "two!bangs!here", "ümlaut", 42]
BAD_GROUP_NAMES = ["", "has space", "x" * 100, "bang!", "ümlaut", None]


@pytest.mark.parametrize("name", BAD_CHANNEL_NAMES)
async def test_invalid_channel_names_are_rejected(case: LayerCase, name: Any) -> None:
    case.require("name_validation")

    with pytest.raises(TypeError):
        await case.layer.send(name, {"type": "nowhere"})
    with pytest.raises(TypeError):
        await case.layer.receive(name)
    with pytest.raises(TypeError):
        await case.layer.group_add("room", name)


@pytest.mark.parametrize("name", BAD_GROUP_NAMES)
async def test_invalid_group_names_are_rejected(case: LayerCase, name: Any) -> None:
    case.require("name_validation")
    channel = await case.channel()

    with pytest.raises(TypeError):
        await case.layer.group_add(name, channel)
    with pytest.raises(TypeError):
        await case.layer.group_discard(name, channel)
    with pytest.raises(TypeError):
        await case.layer.group_send(name, {"type": "nowhere"})
