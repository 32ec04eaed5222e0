"""The PostgreSQL layer when its connections die or the database refuses them.

The shared server is never restarted: connections are ended with
``pg_terminate_backend``, and an outage is made by refusing new
connections to the test database (``ALLOW_CONNECTIONS false``) while the
layer's are ended, which is what a restart looks like from the layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connections

from django_realtime.exceptions import ChannelLayerError
from django_realtime.layers.postgres import PostgresChannelLayer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(databases=["default", "postgres"]),
    pytest.mark.timeout(30),
]

TIMEOUT = 10.0
ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"


def terminate(prefix: str) -> int:
    """End the server connections whose application name starts with ``prefix``."""
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE %s",
            (prefix + "%",),
        ).fetchall()
    return len(rows)


@contextlib.contextmanager
def outage(*prefixes: str) -> Iterator[None]:
    """Refuse new connections to the test database and end these ones."""
    name = connections["postgres"].settings_dict["NAME"]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            for prefix in prefixes:
                terminate(prefix)
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def name_of(layer: PostgresChannelLayer) -> str:
    return f"drt-layer-{layer.process_id}"


@pytest.fixture
async def layers() -> AsyncIterator[list[PostgresChannelLayer]]:
    made: list[PostgresChannelLayer] = []
    yield made
    if made:
        await made[0].flush()
    for layer in made:
        await layer.close()


def make(layers: list[PostgresChannelLayer], **config: Any) -> PostgresChannelLayer:
    layer = PostgresChannelLayer(alias="postgres", capacity=1000, **config)
    layers.append(layer)
    return layer


async def receive(layer: PostgresChannelLayer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await layer.receive(channel)


async def test_connections_ended_mid_stream_lose_nothing_and_invent_nothing(
    layers: list[PostgresChannelLayer],
) -> None:
    sender, receiver = make(layers), make(layers)
    channel = await receiver.new_channel()
    stop = threading.Event()
    killed: list[int] = []

    def kill_repeatedly() -> None:
        while not stop.wait(0.03):
            killed.append(terminate("drt-layer-"))

    killer = threading.Thread(target=kill_repeatedly)
    killer.start()
    sent: list[int] = []
    failed: list[int] = []
    try:
        for n in range(150):
            try:
                await sender.send(channel, {"type": "n", "n": n})
            except ChannelLayerError:
                failed.append(n)
            else:
                sent.append(n)
    finally:
        stop.set()
        await asyncio.to_thread(killer.join)

    received = [(await receive(receiver, channel))["n"] for _ in sent]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.3):
            extra = await receiver.receive(channel)
            pytest.fail(f"Expected nothing more, got {extra!r}.")

    assert sum(killed) > 0
    assert received == sent
    assert failed == []  # each loss was within the timeout: retried


async def test_an_outage_longer_than_the_timeout_fails_clearly_and_keeps_nothing(
    layers: list[PostgresChannelLayer],
) -> None:
    sender, receiver = make(layers, timeout=0.5), make(layers)
    channel = await receiver.new_channel()
    await sender.send(channel, {"type": "before"})
    assert (await receive(receiver, channel))["type"] == "before"

    with outage("drt-layer-"):
        started = time.monotonic()
        with pytest.raises(ChannelLayerError) as raised:
            await sender.send(channel, {"type": "lost"})
        assert time.monotonic() - started < 5

    assert "Nothing of the operation was kept" in str(raised.value)
    assert "DATABASES['postgres']" in str(raised.value)
    await sender.send(channel, {"type": "after"})
    assert (await receive(receiver, channel))["type"] == "after"


async def test_a_receiver_that_was_away_gets_what_was_sent_meanwhile(
    layers: list[PostgresChannelLayer],
) -> None:
    sender, receiver = make(layers), make(layers)
    channel = await receiver.new_channel()
    await receiver.group_add("room", channel)
    await sender.group_send("room", {"type": "n", "n": 0})
    assert (await receive(receiver, channel))["n"] == 0

    with outage(name_of(receiver)):
        for n in range(1, 4):
            await sender.group_send("room", {"type": "n", "n": n})
        await asyncio.sleep(0.2)  # the receiver fails to reconnect meanwhile

    assert [(await receive(receiver, channel))["n"] for _ in range(3)] == [1, 2, 3]


async def test_a_commit_cut_off_is_asked_about_rather_than_guessed(
    layers: list[PostgresChannelLayer],
) -> None:
    # What the engine does when the connection dies during COMMIT: ask the
    # database whether that transaction committed.
    engine = make(layers)._slot.get()
    xids: list[int] = []

    async def remember(connection: Any, now: float) -> None:
        cursor = await connection.execute("SELECT txid_current()")
        row = await cursor.fetchone()
        xids.append(int(row[0]))

    async def fail(connection: Any, now: float) -> None:
        await remember(connection, now)
        raise RuntimeError("rolled back")

    await engine.submit(remember)
    with pytest.raises(RuntimeError):
        await engine.submit(fail)

    async def ask(connection: Any, now: float) -> list[bool]:
        deadline = time.monotonic() + 1
        return [await engine._committed(connection, xid, deadline) for xid in xids]

    assert await engine.submit(ask) == [True, False]
