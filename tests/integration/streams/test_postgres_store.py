"""The PostgreSQL history store beyond the contract.

Publishing inside the caller's transaction (kept and announced once on
commit, gone on rollback), which databases it may write in, and listeners
that resume with nothing lost after their connection was ended during an
outage. The contract suite (test_store_contract.py) runs on it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction

from django_realtime.streams.positions import Position, Publication
from django_realtime.streams.stores.postgres import PostgresHistoryStore

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "postgres"]),
    pytest.mark.timeout(30),
]

ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
QUIET = 0.3


class Recorder:
    """A listener that records what it is told."""

    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self.arrived = asyncio.Event()

    def publication(self, publication: Publication) -> None:
        self.publications.append(publication)
        self.arrived.set()

    def resync(self, stream: str) -> None:
        pass

    async def wait_for(self, count: int) -> list[int]:
        async with asyncio.timeout(10):
            while len(self.publications) < count:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.sleep(QUIET)  # a duplicate would arrive by now
        return [publication.offset for publication in self.publications]


def fresh() -> None:
    """Drop this thread's Django connection: an earlier test's may be ended."""
    connections["postgres"].close()


@pytest.fixture
async def stores() -> AsyncIterator[list[PostgresHistoryStore]]:
    made: list[PostgresHistoryStore] = []
    yield made
    if made:
        await made[0].flush()
    for store in made:
        await store.close()


def make(stores: list[PostgresHistoryStore]) -> PostgresHistoryStore:
    store = PostgresHistoryStore("postgres")
    stores.append(store)
    return store


async def kept(store: PostgresHistoryStore, stream: str) -> list[object]:
    epoch = (await store.read(stream)).epoch
    history = await store.read(stream, Position(epoch, 0))
    return [json.loads(publication.data) for publication in history.publications]


def test_it_writes_in_its_own_database_only() -> None:
    store = PostgresHistoryStore("postgres")

    assert store.writes_in("postgres")
    assert store.writes_in("postgres_pool")  # the same database, pooled
    assert not store.writes_in("default")
    with pytest.raises(ValueError, match="this store's PostgreSQL database"):
        store.publish_in_transaction("s", '"x"', using="default")


async def test_a_publication_in_a_committed_transaction_is_announced_once(
    stores: list[PostgresHistoryStore],
) -> None:
    publisher, listener = make(stores), make(stores)
    recorder = Recorder()
    await listener.listen("orders", recorder)

    def order() -> Publication:
        fresh()
        with transaction.atomic(using="postgres"):
            publication = publisher.publish_in_transaction(
                "orders", '{"id": 1}', using="postgres"
            )
            # Not visible, nor announced, before the commit.
            name = connections["postgres"].settings_dict["NAME"]
            with psycopg.connect(
                f"host=127.0.0.1 user=postgres dbname={name}"
            ) as other:
                row = other.execute(
                    "SELECT count(*) FROM drt_pg_stream_entry WHERE stream = 'orders'"
                ).fetchone()
                assert row == (0,)
            return publication

    publication = await sync_to_async(order)()

    assert await recorder.wait_for(1) == [publication.offset]
    assert recorder.publications[0].data == '{"id": 1}'
    assert await kept(listener, "orders") == [{"id": 1}]


async def test_a_publication_in_a_rolled_back_transaction_is_gone(
    stores: list[PostgresHistoryStore],
) -> None:
    publisher, listener = make(stores), make(stores)
    recorder = Recorder()
    await listener.listen("orders", recorder)

    def order() -> None:
        fresh()
        with contextlib.suppress(RuntimeError), transaction.atomic(using="postgres"):
            publisher.publish_in_transaction("orders", '"never"', using="postgres")
            raise RuntimeError("roll back")

    await sync_to_async(order)()
    await publisher.publish("orders", '"later"')

    assert await recorder.wait_for(1) == [1]
    assert await kept(listener, "orders") == ["later"]


async def test_a_savepoint_rolled_back_inside_a_committed_transaction_is_gone(
    stores: list[PostgresHistoryStore],
) -> None:
    store = make(stores)

    def order() -> None:
        fresh()
        with transaction.atomic(using="postgres"):
            store.publish_in_transaction("orders", '"kept"', using="postgres")
            with (
                contextlib.suppress(RuntimeError),
                transaction.atomic(using="postgres"),
            ):
                store.publish_in_transaction("orders", '"undone"', using="postgres")
                raise RuntimeError("roll back the savepoint")

    await sync_to_async(order)()

    assert await kept(store, "orders") == ["kept"]


@contextlib.contextmanager
def outage(prefix: str) -> Iterator[None]:
    """Refuse new connections to the test database; end ``prefix``'s."""
    name = connections["postgres"].settings_dict["NAME"]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE %s",
                (prefix + "%",),
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


async def test_a_listener_resumes_after_an_outage_with_nothing_lost(
    stores: list[PostgresHistoryStore],
) -> None:
    publisher, listener = make(stores), make(stores)
    recorder = Recorder()
    await listener.listen("feed", recorder)
    await publisher.publish("feed", '"before"')
    assert await recorder.wait_for(1) == [1]

    with outage(f"drt-streams-{os.getpid()}-{id(listener):x}"):
        for n in range(3):
            await publisher.publish("feed", json.dumps(n))
        await asyncio.sleep(0.2)  # the listener fails to reconnect meanwhile

    assert await recorder.wait_for(4) == [1, 2, 3, 4]
