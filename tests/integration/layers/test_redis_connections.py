"""The Redis layer and history store give back the connections a burst opened.

The rule that picks which idle connections to close runs without Redis or an
event loop; the rest counts the server's connections in ``CLIENT LIST`` by
the name the layer or store gives them, on the real Redis server.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio

from django_realtime.layers.redis import RedisChannelLayer
from django_realtime.layers.redis._pool import expired
from django_realtime.streams.stores.base import Publication
from django_realtime.streams.stores.redis import RedisHistoryStore
from tests.integration.layers.conftest import REDIS_URL, RUN_PREFIX

TIMEOUT = 10.0
# What a consumer's handler may hold in a context variable while it calls.
HANDLING: contextvars.ContextVar[object] = contextvars.ContextVar("handling")
BURST = 50
# Short, so that the test waits little for connections to be closed.
IDLE = 0.3


# The rule, without Redis or an event loop


def test_connections_idle_for_the_timeout_are_due_but_the_newest_is_kept() -> None:
    idle_since = {"oldest": 1.0, "old": 2.0, "newest": 3.0}

    due, next_at = expired(idle_since, now=11.5, idle_timeout=10.0, keep=1)

    assert due == ["oldest"]
    assert next_at == 12.0


def test_the_kept_connections_are_never_due() -> None:
    idle_since = {"a": 1.0, "b": 2.0}

    assert expired(idle_since, now=100.0, idle_timeout=1.0, keep=2) == ([], None)


def test_nothing_due_says_when_to_look_again() -> None:
    idle_since = {"a": 5.0, "b": 7.0, "c": 9.0}

    assert expired(idle_since, now=6.0, idle_timeout=10.0, keep=1) == ([], 15.0)


# On the real Redis server


@pytest.fixture
async def redis_client(redis_available: None) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL, protocol=2)
    yield client
    await client.aclose()


Count = Callable[[], Awaitable[int]]


def counter(client: redis.asyncio.Redis, name: str) -> Count:
    """Return a function counting the server's connections named ``name``."""

    async def count() -> int:
        return sum(1 for c in await client.client_list() if c["name"] == name)

    return count


async def until_back_to(count: Count, expected: int) -> None:
    """Wait until ``count()`` is ``expected``: the server says nothing when."""
    seen = -1
    try:
        async with asyncio.timeout(TIMEOUT):
            while (seen := await count()) != expected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(
            f"Expected {expected} connection(s) within {TIMEOUT} s of the burst, "
            f"still {seen}."
        )


@pytest.fixture
async def layer(redis_available: None) -> AsyncIterator[RedisChannelLayer]:
    """A layer whose command connections carry a name of their own."""
    prefix = f"{RUN_PREFIX}.{uuid.uuid4().hex[:8]}"
    name = f"{prefix}-commands"
    built = RedisChannelLayer(
        hosts=[{"address": REDIS_URL, "client_name": name}],
        prefix=prefix,
        idle_timeout=IDLE,
    )
    yield built
    await built.flush()
    await built.close()


def commands_of(layer: RedisChannelLayer, client: redis.asyncio.Redis) -> Count:
    return counter(client, f"{layer.prefix}-commands")


@pytest.mark.redis
async def test_connections_opened_by_a_burst_of_sends_are_closed_once_idle(
    layer: RedisChannelLayer, redis_client: redis.asyncio.Redis
) -> None:
    count = commands_of(layer, redis_client)
    await layer.send("jobs.0", {"type": "warm"})
    assert await count() == 1

    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(
            *(layer.send(f"jobs.{n}", {"type": "job", "n": n}) for n in range(BURST))
        )
    opened = await count()

    await until_back_to(count, 1)
    assert opened > 1, "the burst should have needed several connections"


@pytest.mark.redis
async def test_connections_of_waiting_receives_are_closed_once_they_return(
    layer: RedisChannelLayer, redis_client: redis.asyncio.Redis
) -> None:
    count = commands_of(layer, redis_client)
    channels = [f"work.{n}" for n in range(20)]

    async with asyncio.timeout(TIMEOUT):
        receives = [asyncio.ensure_future(layer.receive(c)) for c in channels]
        # Each waiting receive holds a connection in BLPOP.
        while await count() < len(channels):  # noqa: ASYNC110 - Redis says nothing
            await asyncio.sleep(0.01)
        for n, channel in enumerate(channels):
            await layer.send(channel, {"type": "work", "n": n})
        results = await asyncio.gather(*receives)

    assert [r["n"] for r in results] == list(range(len(channels)))
    await until_back_to(count, 1)


@pytest.mark.redis
async def test_the_layer_works_on_after_its_connections_were_closed(
    layer: RedisChannelLayer, redis_client: redis.asyncio.Redis
) -> None:
    count = commands_of(layer, redis_client)
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(layer.send(f"a.{n}", {"n": n}) for n in range(BURST)))
    await until_back_to(count, 1)

    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(layer.send(f"b.{n}", {"n": n}) for n in range(BURST)))
        received = await asyncio.gather(
            *(layer.receive(f"b.{n}") for n in range(BURST))
        )

    assert [m["n"] for m in received] == list(range(BURST))
    await until_back_to(count, 1)


@pytest.mark.redis
async def test_the_history_store_closes_the_connections_of_a_burst_once_idle(
    redis_client: redis.asyncio.Redis,
) -> None:
    store = RedisHistoryStore(
        REDIS_URL, prefix=f"{RUN_PREFIX}.{uuid.uuid4().hex[:8]}", idle_timeout=IDLE
    )
    count = counter(redis_client, store.client_name)
    try:
        await store.publish("warm", "{}")
        assert await count() == 1

        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(
                *(store.publish(f"s.{n}", f'{{"n": {n}}}') for n in range(BURST))
            )
        opened = await count()

        await until_back_to(count, 1)
        assert opened > 1, "the burst should have needed several connections"
    finally:
        await store.flush()
        await store.close()


class Handler:
    """Stands for a consumer: what the caller's context holds."""

    def publication(self, publication: Publication) -> None:
        """Take a stream's publication: nothing to do with it here."""

    def resync(self, stream: str) -> None:
        """Take notice of lost announcements: nothing to do here."""


async def in_a_handler(calls: Callable[[], Awaitable[None]]) -> weakref.ref[Handler]:
    """Make ``calls`` in a task whose context holds a handler, as consumers do.

    Returns:
        A weak reference to the handler, which nothing else holds.
    """
    handler = Handler()
    gone = weakref.ref(handler)

    async def handle() -> None:
        HANDLING.set(handler)
        await calls()

    async with asyncio.timeout(TIMEOUT):
        await asyncio.create_task(handle())
    # The loop's handle that resumed this task holds the finished one (and
    # its context) until this step ends.
    await asyncio.sleep(0)
    return gone


@pytest.mark.redis
async def test_the_layer_keeps_nothing_of_the_context_it_was_first_called_in(
    layer: RedisChannelLayer, redis_client: redis.asyncio.Redis
) -> None:
    async def calls() -> None:
        member = await layer.new_channel()
        await layer.group_add("room", member)
        await asyncio.gather(*(layer.send(f"j.{n}", {"n": n}) for n in range(BURST)))

    gone = await in_a_handler(calls)
    # Until then asyncio's cancelled timers (the calls' timeouts) may hold
    # the context: they leave the loop when no live timer is due before.
    await until_back_to(commands_of(layer, redis_client), 1)
    gc.collect()

    assert gone() is None, "the layer's connections keep the caller's context"


@pytest.mark.redis
async def test_the_history_store_keeps_nothing_of_the_context_it_was_called_in(
    redis_client: redis.asyncio.Redis,
) -> None:
    store = RedisHistoryStore(
        REDIS_URL, prefix=f"{RUN_PREFIX}.{uuid.uuid4().hex[:8]}", idle_timeout=IDLE
    )
    listener = Handler()

    async def calls() -> None:
        await store.listen("s.0", listener)
        await asyncio.gather(*(store.publish(f"s.{n}", "{}") for n in range(BURST)))

    try:
        gone = await in_a_handler(calls)
        await until_back_to(counter(redis_client, store.client_name), 1)
        gc.collect()

        assert gone() is None, "the store's connections keep the caller's context"
    finally:
        await store.flush()
        await store.close()
