"""The PostgreSQL layer beyond the contract: size, sharing, checks, leaks.

The contract suite (test_contract.py) runs on the layer too; these tests
cover what only this layer promises. Two layer objects stand for two
processes: each has its own process id, thread and connections.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.db import connections

from django_realtime.layers.postgres import PostgresChannelLayer
from django_realtime.layers.postgres.checks import check_database, check_postgres
from django_realtime.layers.postgres.schema import (
    CREATE_SQL,
    LAYER_TABLES,
    PRESENCE_TABLES,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(databases=["default", "postgres"]),
    pytest.mark.timeout(30),
]

TIMEOUT = 5.0


def backends(prefix: str) -> int:
    """Return how many server connections have an application name like this."""
    with psycopg.connect(
        "host=127.0.0.1 user=postgres dbname=postgres", autocommit=True
    ) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            (prefix + "%",),
        ).fetchone()
    return int(row[0]) if row else 0


def backends_once_settled(prefix: str, expected: int, within: float = 5.0) -> int:
    """Return :func:`backends` once it is ``expected``, or at the deadline.

    A server process leaves pg_stat_activity shortly after its client closed
    the connection, not at once.
    """
    deadline = time.monotonic() + within
    while (count := backends(prefix)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


@pytest.fixture
async def layers() -> AsyncIterator[list[PostgresChannelLayer]]:
    made: list[PostgresChannelLayer] = []
    yield made
    if made:
        await made[0].flush()
    for layer in made:
        await layer.close()


def make(layers: list[PostgresChannelLayer], **config: Any) -> PostgresChannelLayer:
    layer = PostgresChannelLayer(alias="postgres", **config)
    layers.append(layer)
    return layer


async def receive(layer: PostgresChannelLayer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await layer.receive(channel)


async def test_a_message_over_the_notify_limit_reaches_another_process(
    layers: list[PostgresChannelLayer],
) -> None:
    sender, receiver = make(layers), make(layers)
    channel = await receiver.new_channel()
    body = bytes(range(256)) * 400  # 100 KB; NOTIFY payloads stop at 8,000 bytes

    await sender.send(channel, {"type": "big", "body": body})

    assert await receive(receiver, channel) == {"type": "big", "body": body}


async def test_a_group_message_over_the_notify_limit_reaches_every_member(
    layers: list[PostgresChannelLayer],
) -> None:
    first, second = make(layers), make(layers)
    here, there = await first.new_channel(), await second.new_channel()
    await first.group_add("big", here)
    await second.group_add("big", there)
    text = "é" * 60_000

    await first.group_send("big", {"type": "big", "text": text})

    assert (await receive(first, here))["text"] == text
    assert (await receive(second, there))["text"] == text


async def test_a_normal_channel_gives_each_message_to_one_process(
    layers: list[PostgresChannelLayer],
) -> None:
    sender, workers = make(layers), [make(layers), make(layers)]
    got: list[int] = []
    all_in = asyncio.Event()

    async def work(layer: PostgresChannelLayer) -> None:
        while True:
            got.append((await layer.receive("jobs.run"))["n"])
            if len(got) == 40:
                all_in.set()

    tasks = [asyncio.create_task(work(layer)) for layer in workers]
    for n in range(40):
        await sender.send("jobs.run", {"type": "job", "n": n})
    async with asyncio.timeout(TIMEOUT):
        await all_in.wait()
    await asyncio.sleep(0.2)  # a duplicate would arrive by now
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert sorted(got) == list(range(40))


async def test_capacity_holds_across_processes(
    layers: list[PostgresChannelLayer],
) -> None:
    one, two = make(layers, capacity=5), make(layers, capacity=5)

    results = await asyncio.gather(
        *(layer.send("shared.full", {"type": "x"}) for layer in (one, two) * 6),
        return_exceptions=True,
    )

    assert sum(result is None for result in results) == 5


async def test_a_dead_process_loses_its_memberships(
    layers: list[PostgresChannelLayer],
) -> None:
    dead = make(layers)
    channel = await dead.new_channel()
    await dead.group_add("room", channel)
    await dead.send(channel, {"type": "unread"})
    # The process "dies": its thread stops without removing anything.
    await dead._slot.close(5)
    name = connections["postgres"].settings_dict["NAME"]
    with psycopg.connect(
        f"host=127.0.0.1 user=postgres dbname={name}", autocommit=True
    ) as admin:
        admin.execute(
            "UPDATE drt_pg_process SET seen_at = seen_at - 1000 WHERE id = %s",
            (dead.process_id,),
        )
    survivor = make(layers, dead_after=60)
    engine = survivor._slot.get()
    engine.listening_since -= 1000  # as if it had listened for long

    async with asyncio.timeout(TIMEOUT):
        await survivor.group_add("other", "warm.up")
        while (await _members(survivor, "room")) != 0:
            engine.listening_since -= 1000
            await engine.submit(survivor._sweep)

    assert await _members(survivor, "room") == 0


async def _members(layer: PostgresChannelLayer, group: str) -> int:
    async def work(connection: Any, now: float) -> int:
        cursor = await connection.execute(
            "SELECT count(*) FROM drt_pg_membership WHERE grp = %s", (group,)
        )
        row = await cursor.fetchone()
        return int(row[0])

    result: int = await layer._slot.get().submit(work)
    return result


def test_group_send_from_sync_code_keeps_two_connections_and_one_thread() -> None:
    layer = PostgresChannelLayer(alias="postgres")
    try:
        send = async_to_sync(layer.group_send)
        for n in range(100):
            send("quiet", {"type": "again", "n": n})

        engines = [
            t for t in threading.enumerate() if t.name == "postgres-layer-postgres"
        ]
        assert len(engines) == 1
        assert backends(f"drt-layer-{layer.process_id}") == 2
    finally:
        async_to_sync(layer.close)()
    assert backends_once_settled(f"drt-layer-{layer.process_id}", 0) == 0


# System checks


def test_checks_pass_on_a_migrated_database(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "django_realtime.layers.postgres.PostgresChannelLayer",
            "CONFIG": {"alias": "postgres"},
        }
    }
    settings.REALTIME = {
        "STREAM_STORE": {
            "BACKEND": "django_realtime.streams.stores.postgres.PostgresHistoryStore",
            "OPTIONS": {"alias": "postgres"},
        }
    }

    assert check_postgres() == []


def test_a_missing_alias_and_a_sqlite_alias_are_errors(settings: Any) -> None:
    backend = "django_realtime.layers.postgres.PostgresChannelLayer"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": backend, "CONFIG": {"alias": "nowhere"}},
        "other": {"BACKEND": backend},  # alias "default": SQLite here
    }

    ids = sorted(message.id for message in check_postgres())

    assert ids == ["django_realtime.postgres.E001", "django_realtime.postgres.E002"]


def test_a_database_without_the_tables_is_an_error() -> None:
    # The server's maintenance database never had the app's migrations.
    settings_dict = {
        **connections["postgres"].settings_dict,
        "NAME": "postgres",
    }

    (message,) = check_database("CHANNEL_LAYERS['x']", "x", settings_dict, LAYER_TABLES)

    assert message.id == "django_realtime.postgres.E003"
    assert "migrate --database x" in str(message.hint)


def test_a_store_database_without_the_presence_tables_is_an_error(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Migrated up to 0004 only: the store's tables, not presence's (0005).
    name = f"drt_check_{uuid.uuid4().hex[:8]}"
    admin_dsn = "host=127.0.0.1 user=postgres dbname=postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(
            f"host=127.0.0.1 user=postgres dbname={name}", autocommit=True
        ) as scratch:
            for statement in CREATE_SQL:
                scratch.execute(statement)
        monkeypatch.setitem(
            connections.settings,
            "scratch",
            {**connections["postgres"].settings_dict, "NAME": name},
        )
        settings.CHANNEL_LAYERS = {}
        settings.REALTIME = {
            "STREAM_STORE": {
                "BACKEND": "django_realtime.streams.stores.postgres."
                "PostgresHistoryStore",
                "OPTIONS": {"alias": "scratch"},
            }
        }

        (message,) = check_postgres()
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")

    assert message.id == "django_realtime.postgres.E003"
    assert all(table in message.msg for table in PRESENCE_TABLES)
    assert "drt_pg_stream," not in message.msg


def test_an_unreachable_database_is_a_warning() -> None:
    settings_dict = {**connections["postgres"].settings_dict, "PORT": "1"}

    (message,) = check_database("CHANNEL_LAYERS['x']", "x", settings_dict, LAYER_TABLES)

    assert message.id == "django_realtime.postgres.W001"


def test_the_migration_creates_the_tables_on_postgresql_only() -> None:
    with connections["postgres"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM unnest(%s::text[]) AS t WHERE to_regclass(t) "
            "IS NOT NULL",
            [list(LAYER_TABLES)],
        )
        assert cursor.fetchone()[0] == len(LAYER_TABLES)
    assert not {"drt_pg_message", "drt_pg_stream"} & set(
        connections["default"].introspection.table_names()
    )


@pytest.mark.parametrize(("durable", "expected"), [(False, "off"), (True, "on")])
async def test_sends_wait_for_the_disk_only_when_durable(
    layers: list[PostgresChannelLayer], durable: bool, expected: str
) -> None:
    layer = make(layers, durable=durable)
    await layer.send("durability", {"type": "x"})  # connects the writer

    async def setting(connection: Any, now: float) -> str:
        cursor = await connection.execute("SHOW synchronous_commit")
        row = await cursor.fetchone()
        return str(row[0])

    assert await layer._slot.get().submit(setting) == expected


def test_durable_must_be_a_boolean() -> None:
    with pytest.raises(TypeError, match="durable must be True or False"):
        PostgresChannelLayer(alias="postgres", durable="yes")  # type: ignore[arg-type]
