"""What django_realtime's Redis layer adds to the contract.

The first part checks its rules without Redis or an event loop. The rest runs
layer instances on the real Redis server, two at a time where they stand for
two processes, each with its own key prefix so that concurrent runs do not
meet.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio

from django_realtime.exceptions import (
    ChannelFull,
    ChannelLayerError,
    InvalidChannelName,
)
from django_realtime.layers.redis import RedisChannelLayer
from django_realtime.layers.redis._core import (
    Names,
    ReportGate,
    Subscriptions,
    backoff_delay,
    pack_direct,
    pack_entry,
    process_of,
    split_direct,
    unpack_deadline,
)
from tests.integration.layers.conftest import (
    REDIS_HOST,
    REDIS_PORT,
    REDIS_URL,
    RUN_PREFIX,
)

TIMEOUT = 10.0
QUIET = 0.3
LOGGER = "django_realtime.layers.redis.layer"


# The rules, without Redis or an event loop


def test_process_of_returns_the_id_before_the_bang() -> None:
    assert process_of("specific.0123456789abcdef!7") == "0123456789abcdef"
    assert process_of("room0123456789abcdef!") == "0123456789abcdef"


def test_process_of_a_normal_channel_is_none() -> None:
    assert process_of("thumbnails.make") is None


@pytest.mark.parametrize("name", ["short!1", "specific.0123456789ABCDEF!1", "!x"])
def test_process_of_rejects_bang_names_without_a_process_id(name: str) -> None:
    with pytest.raises(ValueError, match="no process id before it"):
        process_of(name)


def test_names_keep_keys_and_topics_under_the_prefix() -> None:
    names = Names("app")

    assert names.queue_key("jobs") == "app:q:jobs"
    assert names.group_key("room") == "app:g:room"
    assert names.group_topic("room") == "app:group:room"
    assert names.process_topic("0123456789abcdef") == "app:process:0123456789abcdef"
    assert names.queue_key("jobs").startswith(names.queue_prefix)
    assert names.process_topic("p").startswith(names.process_topic_prefix)


def test_key_pattern_escapes_glob_characters_of_the_prefix() -> None:
    assert Names("a*b?[c]").key_pattern() == r"a\*b\?\[c\]:*"


def test_entries_carry_their_deadline_in_front_of_the_payload() -> None:
    entry = pack_entry(1234.5, b"payload")

    assert unpack_deadline(entry) == 1234.5
    assert entry.endswith(b"payload")


def test_direct_messages_split_into_channel_and_payload() -> None:
    channel, payload = split_direct(pack_direct("a.b!1", b"\x00\x01msg"))

    assert channel == "a.b!1"
    assert bytes(payload) == b"\x00\x01msg"


def test_concurrent_wants_of_one_topic_send_one_subscribe() -> None:
    table = Subscriptions()
    table.connection_made()

    assert [table.want("t") for _ in range(1000)] == [True] + [False] * 999
    assert not table.is_active("t")
    assert table.subscribed("t")
    assert table.is_active("t")


def test_topics_wanted_while_disconnected_are_subscribed_on_connection() -> None:
    table = Subscriptions()

    assert table.want("b") is False
    assert table.want("a") is False
    assert table.connection_made() == ["a", "b"]
    assert table.subscribed("a")
    assert table.subscribed("b")


def test_a_resubscription_waits_for_its_own_confirmation() -> None:
    table = Subscriptions()
    table.connection_made()
    table.want("t")  # SUBSCRIBE 1
    assert table.unwant("t")  # UNSUBSCRIBE
    assert table.want("t")  # SUBSCRIBE 2

    assert table.subscribed("t") is False  # the first one's confirmation
    assert not table.is_active("t")
    assert table.subscribed("t") is True
    assert table.is_active("t")


def test_a_lost_connection_deactivates_every_topic_but_keeps_them_wanted() -> None:
    table = Subscriptions()
    table.connection_made()
    table.want("t")
    table.subscribed("t")

    table.connection_lost()

    assert not table.is_active("t")
    assert table.want("t") is False
    assert table.connection_made() == ["t"]


def test_unwanted_topics_are_not_activated_by_late_confirmations() -> None:
    table = Subscriptions()
    table.connection_made()
    table.want("t")
    table.unwant("t")

    assert table.subscribed("t") is False
    assert not table.is_active("t")
    assert table.unwant("t") is False


def test_backoff_doubles_up_to_its_cap_and_jitter_shortens_it() -> None:
    delays = [backoff_delay(n, base=0.1, cap=1.0) for n in range(1, 7)]

    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_delay(3, base=0.1, cap=1.0, jitter=1.0) == pytest.approx(0.2)


def test_report_gate_reports_at_once_then_at_most_once_per_interval() -> None:
    gate = ReportGate(interval=1.0)

    assert gate.add("chan", 1, now=10.0) == 1
    assert gate.add("chan", 1, now=10.2) == 0
    assert gate.add("chan", 2, now=10.5) == 0
    assert gate.add("other", 1, now=10.5) == 1
    assert gate.add("chan", 1, now=11.1) == 4


def test_report_gate_hands_over_counts_no_later_event_reported() -> None:
    gate = ReportGate(interval=1.0)
    gate.add("chan", 1, now=10.0)
    gate.add("chan", 2, now=10.5)

    assert gate.overdue(now=10.9) == []
    assert gate.overdue(now=11.0) == [("chan", 2)]
    assert gate.overdue(now=12.5) == []


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"hosts": ["redis://a", "redis://b"]}, "exactly one, got 2"),
        ({"hosts": "redis://a"}, "must be a list of one Redis URL"),
        ({"hosts": [{"password": "x"}]}, "dict with an 'address' URL"),
        ({"prefix": ""}, "prefix must be a non-empty string"),
        ({"group_expiry": 0}, "group_expiry must be positive"),
        ({"subscribe_timeout": "5"}, "subscribe_timeout must be a number"),
        ({"capacity": 0}, "capacity must be a positive integer"),
    ],
)
def test_bad_configuration_is_rejected_with_the_value(
    config: dict[str, Any], error: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        RedisChannelLayer(**config)


def test_a_missing_redis_package_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)

    expected = r"pip install 'django-realtime-framework\[redis\]'"
    with pytest.raises(ImportError, match=expected):
        RedisChannelLayer()


def test_repr_names_the_server_without_credentials() -> None:
    layer = RedisChannelLayer(hosts=["redis://user:secret@127.0.0.1:6379/2"])

    assert repr(layer) == (
        "<RedisChannelLayer redis://127.0.0.1:6379/2 prefix='realtime'>"
    )


# On the real Redis server

Make = Callable[..., RedisChannelLayer]


@pytest.fixture
async def make(redis_available: None) -> AsyncIterator[Make]:
    """Build layers sharing one fresh prefix, as processes of one project."""
    prefix = f"{RUN_PREFIX}.{uuid.uuid4().hex[:8]}"
    built: list[RedisChannelLayer] = []

    def make(**config: Any) -> RedisChannelLayer:
        config = {"hosts": [REDIS_URL], "prefix": prefix, **config}
        layer = RedisChannelLayer(**config)
        built.append(layer)
        return layer

    yield make
    for layer in built:
        await layer.flush()
        await layer.close()


@pytest.fixture
async def redis_client(redis_available: None) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL, protocol=2)
    yield client
    await client.aclose()


async def receive(layer: RedisChannelLayer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await layer.receive(channel)


async def assert_nothing_arrives(layer: RedisChannelLayer, channel: str) -> None:
    try:
        async with asyncio.timeout(QUIET):
            message = await layer.receive(channel)
    except TimeoutError:
        return
    pytest.fail(f"Expected no message on {channel!r}, got {message!r}.")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` to hold, polling: for what nothing signals."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not condition():  # noqa: ASYNC110 - nothing to await
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"Timed out waiting for {what}.")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


async def subscribers(client: redis.asyncio.Redis, topic: str) -> int:
    [(_, count)] = await client.pubsub_numsub(topic)
    return int(count)


@pytest.mark.redis
async def test_two_instances_see_each_others_channels_and_groups(make: Make) -> None:
    first, second = make(), make()
    here, there = await first.new_channel(), await second.new_channel()
    await first.group_add("room", here)
    await second.group_add("room", there)

    await second.send(here, {"type": "direct", "to": "first"})
    await first.group_send("room", {"type": "chat.message", "text": "hi"})

    assert await receive(first, here) == {"type": "direct", "to": "first"}
    assert await receive(first, here) == {"type": "chat.message", "text": "hi"}
    assert await receive(second, there) == {"type": "chat.message", "text": "hi"}


@pytest.mark.redis
async def test_new_channel_names_carry_the_process_id(make: Make) -> None:
    layer = make()

    name = await layer.new_channel("room.")

    assert re.fullmatch(rf"room\.{layer.process_id}!\d+", name)
    assert process_of(name) == layer.process_id


@pytest.mark.redis
async def test_a_thousand_concurrent_joins_send_one_subscribe(
    make: Make, redis_client: redis.asyncio.Redis
) -> None:
    layer = make()
    channels = [await layer.new_channel() for _ in range(1000)]
    topic = f"{layer.prefix}:group:crowd"
    marker = f"{layer.prefix}:done"
    subscribes = 0
    async with redis_client.monitor() as monitor:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(
                *(layer.group_add("crowd", channel) for channel in channels)
            )
            await redis_client.echo(marker)
            while True:
                command = (await monitor.next_command())["command"]
                if marker in command:
                    break
                if command.startswith("SUBSCRIBE") and topic in command:
                    subscribes += 1

    assert subscribes == 1
    assert await subscribers(redis_client, topic) == 1


@pytest.mark.redis
async def test_a_group_send_reaches_a_thousand_members_across_two_instances(
    make: Make,
) -> None:
    first, second = make(), make()
    members = [
        (layer, await layer.new_channel())
        for layer in (first, second)
        for _ in range(500)
    ]
    await asyncio.gather(*(layer.group_add("crowd", ch) for layer, ch in members))

    await first.group_send("crowd", {"type": "broadcast", "n": 1})

    received = await asyncio.gather(*(receive(layer, ch) for layer, ch in members))
    assert received == [{"type": "broadcast", "n": 1}] * 1000
    assert first.stats.local.sent == second.stats.local.sent == 500


@pytest.mark.redis
async def test_a_killed_pubsub_connection_reconnects_and_subscribes_again(
    make: Make,
    redis_client: redis.asyncio.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    layer, other = make(), make()
    member = await layer.new_channel()
    await layer.group_add("room", member)
    [victim] = [
        client
        for client in await redis_client.client_list()
        if client["name"].endswith(f"{layer.process_id}-pubsub")
    ]

    await redis_client.client_kill_filter(_id=victim["id"])
    # Waits for the new connection: it subscribes every wanted topic at once.
    await layer.group_add("lobby", await layer.new_channel())
    await other.group_send("room", {"type": "after.kill"})
    await other.send(member, {"type": "direct.after.kill"})

    assert await receive(layer, member) == {"type": "after.kill"}
    assert await receive(layer, member) == {"type": "direct.after.kill"}
    assert layer.stats.reconnects == 1
    down, restored = warnings_of(caplog)
    assert "pub/sub connection to redis://127.0.0.1:6379 is down" in down
    assert "are lost" in down
    assert re.search(r"Reconnected .* after \d+\.\d\d s .* were lost\.", restored)


@pytest.mark.redis
async def test_a_worker_message_sent_before_the_receiver_exists_is_received(
    make: Make,
) -> None:
    view = make()
    await view.send("thumbnails", {"type": "thumbnail.make", "id": 7})
    await view.close()

    worker = make()

    assert await receive(worker, "thumbnails") == {"type": "thumbnail.make", "id": 7}


async def blocked_pops(client: redis.asyncio.Redis) -> set[str]:
    return {c["id"] for c in await client.client_list() if c["cmd"] == "blpop"}


@pytest.mark.redis
async def test_a_message_taken_by_a_cancelled_receive_goes_back_on_the_queue(
    make: Make, redis_client: redis.asyncio.Redis
) -> None:
    impatient, patient = make(), make()
    before = await blocked_pops(redis_client)
    waiting = asyncio.create_task(impatient.receive("jobs"))
    async with asyncio.timeout(TIMEOUT):  # until its BLPOP blocks in Redis
        while not await blocked_pops(redis_client) - before:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    await patient.send("jobs", {"type": "job", "n": 1})
    await patient.send("jobs", {"type": "job", "n": 2})

    received = [(await receive(patient, "jobs"))["n"] for _ in range(2)]
    assert sorted(received) == [1, 2]  # put back at the head: order may change


@pytest.mark.redis
async def test_each_worker_message_goes_to_one_receiver_across_instances(
    make: Make,
) -> None:
    workers = [make(), make()]
    receiving = [
        asyncio.create_task(receive(worker, "jobs"))
        for worker in workers
        for _ in range(3)
    ]
    for n in range(6):
        await workers[0].send("jobs", {"type": "job", "n": n})

    received = await asyncio.gather(*receiving)

    assert sorted(message["n"] for message in received) == list(range(6))


@pytest.mark.redis
async def test_a_full_channel_drops_messages_from_other_processes_and_says_so(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    owner, sender = make(capacity=2), make(capacity=2)
    channel, marker = await owner.new_channel(), await owner.new_channel()
    await owner.group_add("room", channel)
    for n in range(3):
        await sender.send(channel, {"type": "direct", "n": n})
    await sender.group_send("room", {"type": "group"})
    await sender.send(marker, {"type": "all.sent"})  # arrives after the others
    await receive(owner, marker)

    assert [(await receive(owner, channel))["n"] for _ in range(2)] == [0, 1]
    await assert_nothing_arrives(owner, channel)
    assert owner.stats.remote_dropped == 1
    assert owner.stats.local.dropped_messages == 1
    assert warnings_of(caplog) == [
        f"Channel {channel!r} is full (capacity 2): dropped 1 message(s) sent to "
        "it from other processes.",
        "group_send to 'room': 1 of 1 members were full; message dropped for them "
        "(message type 'group'; 1 dropped since the last report).",
    ]


@pytest.mark.redis
async def test_a_send_from_here_to_a_full_local_channel_raises(make: Make) -> None:
    layer = make(capacity=1)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "fills"})

    with pytest.raises(ChannelFull, match="capacity is 1"):
        await layer.send(channel, {"type": "too.many"})


@pytest.mark.redis
async def test_a_send_to_an_ended_process_is_counted_as_undeliverable(
    make: Make,
) -> None:
    gone, sender = make(), make()
    channel = await gone.new_channel()
    await gone.close()

    await sender.send(channel, {"type": "nobody.home"})

    assert sender.stats.undeliverable == 1


@pytest.mark.redis
async def test_the_last_local_member_leaving_unsubscribes_the_group(
    make: Make, redis_client: redis.asyncio.Redis
) -> None:
    layer = make()
    first, second = await layer.new_channel(), await layer.new_channel()
    topic = f"{layer.prefix}:group:room"
    await layer.group_add("room", first)
    await layer.group_add("room", second)
    assert await subscribers(redis_client, topic) == 1

    await layer.group_discard("room", first)
    assert await subscribers(redis_client, topic) == 1
    await layer.group_discard("room", second)
    async with asyncio.timeout(TIMEOUT):  # UNSUBSCRIBE is sent, not awaited
        while await subscribers(redis_client, topic):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.mark.redis
async def test_local_group_memberships_expire(make: Make) -> None:
    layer, sender = make(group_expiry=1), make()
    channel = await layer.new_channel()
    await layer.group_add("room", channel)

    await asyncio.sleep(1.2)  # memberships expire on the clock
    await sender.group_send("room", {"type": "too.late"})
    await layer.group_send("room", {"type": "too.late.here"})

    await assert_nothing_arrives(layer, channel)


@pytest.mark.redis
async def test_receivers_get_their_own_copies(make: Make) -> None:
    layer = make()
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("room", first)
    await layer.group_add("room", second)
    sent = {"type": "chat.message", "tags": ["a"]}

    await layer.group_send("room", sent)
    sent["tags"].append("changed by the sender")
    one = await receive(layer, first)
    one["type"] = "changed by a receiver"

    assert await receive(layer, second) == {"type": "chat.message", "tags": ["a"]}


@pytest.mark.redis
async def test_a_message_msgpack_cannot_encode_is_refused_even_locally(
    make: Make,
) -> None:
    layer = make()
    channel = await layer.new_channel()

    with pytest.raises(TypeError, match="must be msgpack-serialisable"):
        await layer.send(channel, {"type": "x", "when": object()})


@pytest.mark.redis
async def test_receiving_on_another_instances_channel_is_refused(make: Make) -> None:
    first, second = make(), make()
    channel = await first.new_channel()

    with pytest.raises(ChannelLayerError, match="made by another process"):
        await second.receive(channel)
    with pytest.raises(InvalidChannelName, match="no process id"):
        await second.receive("specific.notours!1")


@pytest.mark.redis
async def test_calls_from_another_threads_loop_run_on_the_home_loop(
    make: Make,
) -> None:
    layer = make()
    channel = await layer.new_channel()
    await layer.group_add("room", channel)

    def from_a_thread() -> None:
        asyncio.run(layer.send(channel, {"type": "from.thread"}))
        asyncio.run(layer.group_send("room", {"type": "group.from.thread"}))

    await asyncio.to_thread(from_a_thread)

    assert await receive(layer, channel) == {"type": "from.thread"}
    assert await receive(layer, channel) == {"type": "group.from.thread"}


@pytest.mark.redis
async def test_close_from_another_threads_loop_closes_on_the_home_loop(
    make: Make, redis_client: redis.asyncio.Redis
) -> None:
    layer = make()
    await layer.new_channel()
    topic = f"{layer.prefix}:process:{layer.process_id}"

    await asyncio.to_thread(asyncio.run, layer.close())

    async with asyncio.timeout(TIMEOUT):  # Redis notices the closed socket
        while await subscribers(redis_client, topic):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.mark.redis
def test_the_layer_moves_to_a_new_event_loop_when_its_loop_ends(
    redis_available: None,
) -> None:
    prefix = f"{RUN_PREFIX}.{uuid.uuid4().hex[:8]}"
    layer = RedisChannelLayer(hosts=[REDIS_URL], prefix=prefix)
    other = RedisChannelLayer(hosts=[REDIS_URL], prefix=prefix)

    async def join() -> str:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        return channel

    async def hear(channel: str) -> dict[str, Any]:
        await layer.new_channel()  # waits for the new loop's subscriptions
        await other.group_send("room", {"type": "on.a.new.loop"})
        message = await receive(layer, channel)
        await other.flush()
        return message

    channel = asyncio.run(join())

    assert asyncio.run(hear(channel)) == {"type": "on.a.new.loop"}


# A proxy that can stop forwarding without closing, like a network partition


class FreezingProxy:
    """Forward TCP connections to Redis; while frozen, hold every byte."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        self.open.set()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(REDIS_HOST, REDIS_PORT)
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer),
            self._pipe(up_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await source.read(65536):
                await self.open.wait()
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


@pytest.fixture
async def proxy(redis_available: None) -> AsyncIterator[FreezingProxy]:
    proxy = FreezingProxy()
    yield proxy
    await proxy.stop()


@pytest.mark.redis
async def test_a_silent_connection_is_detected_by_ping_and_replaced(
    proxy: FreezingProxy, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    layer = make(hosts=[await proxy.start()], health_check_interval=0.2)
    sender = make()
    channel = await layer.new_channel()
    await layer.group_add("room", channel)

    proxy.open.clear()
    await until(lambda: bool(warnings_of(caplog)), "the loss to be noticed")
    proxy.open.set()
    await layer.group_add("lobby", await layer.new_channel())
    await sender.group_send("room", {"type": "after.partition"})

    assert await receive(layer, channel) == {"type": "after.partition"}
    assert layer.stats.reconnects == 1
    assert "No answer to PING within 0.2 s" in warnings_of(caplog)[0]


@pytest.mark.redis
async def test_drops_not_yet_reported_are_reported_by_the_periodic_tick(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    owner = make(capacity=1, health_check_interval=0.2)
    sender = make()
    channel, marker = await owner.new_channel(), await owner.new_channel()
    for n in range(4):
        await sender.send(channel, {"type": "direct", "n": n})
    await sender.send(marker, {"type": "all.sent"})
    await receive(owner, marker)

    await until(lambda: len(warnings_of(caplog)) == 2, "the overdue report")
    assert warnings_of(caplog)[1] == (
        f"2 more message(s) lost since the last report: full channel {channel!r}."
    )
    assert owner.stats.remote_dropped == 3


@pytest.mark.redis
async def test_a_join_that_redis_does_not_confirm_fails_and_is_not_kept(
    proxy: FreezingProxy, make: Make
) -> None:
    layer = make(hosts=[await proxy.start()], subscribe_timeout=0.3)
    sender = make()
    channel = await layer.new_channel()

    proxy.open.clear()
    with pytest.raises(redis.exceptions.ConnectionError, match="did not confirm"):
        await layer.group_add("room", channel)
    proxy.open.set()
    await layer.group_add("lobby", channel)  # the connection works again
    await sender.group_send("room", {"type": "not.a.member"})

    await assert_nothing_arrives(layer, channel)


@pytest.mark.redis
async def test_flush_drops_this_processs_groups_and_unsubscribes(
    make: Make, redis_client: redis.asyncio.Redis
) -> None:
    layer = make()
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    await layer.send("jobs", {"type": "queued"})

    await layer.flush()
    await layer.group_send("room", {"type": "after.flush"})

    await assert_nothing_arrives(layer, channel)
    assert await redis_client.exists(f"{layer.prefix}:q:jobs") == 0
    await layer.send(channel, {"type": "direct.still.works"})
    assert await receive(layer, channel) == {"type": "direct.still.works"}


@pytest.fixture
def free_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_redis_fails_new_channel_within_the_timeout(
    free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    layer = RedisChannelLayer(
        hosts=[f"redis://127.0.0.1:{free_port}"], subscribe_timeout=0.3
    )
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match=r"within 0\.3 s"):
            await layer.new_channel()
        assert "is down" in warnings_of(caplog)[0]
    finally:
        await layer.close()


@pytest.mark.redis
async def test_discarding_an_ended_channel_drops_its_queue(make: Make) -> None:
    layer = make(capacity=2)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "unread"})
    await layer.send(channel, {"type": "unread"})

    layer.discard_channel(channel)

    assert layer.stats.local.discarded_messages == 2
    # The queue is gone, room and all: two more fit, none of the old.
    await layer.send(channel, {"type": "new"})
    await layer.send(channel, {"type": "new"})
    assert (await receive(layer, channel))["type"] == "new"
