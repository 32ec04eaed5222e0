"""publish() inside transaction.atomic(): written in the transaction itself.

Two ways: the SQLite store in Django's own SQLite file writes the
publication in the transaction; for a store elsewhere (Redis), the stream
outbox does, and relays the row after the commit or, if the publisher died,
from any process that serves streams, exactly once.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, connections, transaction
from django.test import override_settings
from django.utils import timezone

from django_realtime.delivery.outbox import Outbox, activate, deactivate
from django_realtime.delivery.sends import FAILED, settle
from django_realtime.models import StreamOutbox
from django_realtime.streams import publish, relay, set_stream_store
from django_realtime.streams.positions import Position
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.streams.stores.base import HistoryStore
from django_realtime.streams.stores.redis import RedisHistoryStore
from django_realtime.streams.stores.sqlite import SQLiteHistoryStore

pytestmark = [pytest.mark.timeout(20), pytest.mark.django_db(transaction=True)]

REDIS_URL = "redis://127.0.0.1:6379"

T = TypeVar("T")


async def published(store: HistoryStore, stream: str) -> list[object]:
    """Return every payload ``stream`` keeps, oldest first."""
    history = await store.read(stream, Position((await store.read(stream)).epoch, 0))
    return [json.loads(p.data) for p in history.publications]


async def in_db_thread(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` in the ORM's thread; close its connections after.

    Between tests, tests/conftest.py ends the PostgreSQL backends of other
    threads: the next test must not find this thread's connection dead.
    """

    def run() -> T:
        # A connection another test left in this thread may have been ended
        # since: have Django check it before use, as at a request's start.
        close_old_connections()
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return await sync_to_async(run)()


def outbox_rows(alias: str = "default") -> list[tuple[str, str]]:
    rows = StreamOutbox.objects.using(alias).order_by("pk")
    return list(rows.values_list("stream", "data"))


#: The databases the outbox is tried on: SQLite (no row locks) and
#: PostgreSQL (SKIP LOCKED after a commit, NOWAIT for rows left behind).
ALIASES = [
    "default",
    pytest.param(
        "postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.django_db(transaction=True, databases=["default", "postgres"]),
        ],
    ),
]


# -- The SQLite store in Django's own file -----------------------------------


@pytest.fixture
def own_file_store() -> Iterator[SQLiteHistoryStore]:
    name = connections["default"].settings_dict["NAME"]
    store = SQLiteHistoryStore(Path(name))
    old = set_stream_store(store)
    yield store
    set_stream_store(old)


async def test_the_sqlite_store_writes_in_its_own_file_only(
    own_file_store: SQLiteHistoryStore, tmp_path: Path
) -> None:
    assert own_file_store.writes_in("default")
    assert not own_file_store.writes_in("postgres")
    assert not SQLiteHistoryStore(tmp_path / "other.sqlite3").writes_in("default")
    assert not MemoryHistoryStore().writes_in("default")
    await own_file_store.close()


async def test_the_sqlite_store_in_djangos_file_publishes_in_the_transaction(
    own_file_store: SQLiteHistoryStore,
) -> None:
    stream = f"tx.{uuid.uuid4().hex[:8]}"

    def work() -> list[tuple[str]]:
        with transaction.atomic():
            publish(stream, "in the transaction")
            with connections["default"].cursor() as cursor:
                # The same transaction sees it before the commit.
                cursor.execute(
                    "SELECT data FROM drt_stream_entry WHERE stream = %s", [stream]
                )
                return list(cursor.fetchall())

    assert await in_db_thread(work) == [('"in the transaction"',)]
    assert await published(own_file_store, stream) == ["in the transaction"]
    await own_file_store.close()


async def test_the_sqlite_store_in_djangos_file_drops_it_on_rollback(
    own_file_store: SQLiteHistoryStore,
) -> None:
    stream = f"tx.{uuid.uuid4().hex[:8]}"

    def work() -> None:
        with transaction.atomic():
            publish(stream, "kept")
            try:
                with transaction.atomic():
                    publish(stream, "rolled back")
                    raise RuntimeError("boom")
            except RuntimeError:
                pass

    await in_db_thread(work)
    assert await published(own_file_store, stream) == ["kept"]
    await own_file_store.close()


# -- The stream outbox, relaying to Redis -----------------------------------


def _redis_reason() -> str | None:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError as exc:
        return f"Redis is not reachable at 127.0.0.1:6379 ({exc})"
    return None


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisHistoryStore]:
    if (reason := _redis_reason()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)
    outbox = {"STREAM_OUTBOX": {"DATABASES": ["default", "postgres"], "RELAY_AFTER": 1}}
    with override_settings(REALTIME=outbox):
        store = RedisHistoryStore(REDIS_URL, prefix=f"t{uuid.uuid4().hex[:10]}")
        old = set_stream_store(store)
        yield store
        set_stream_store(old)
        await store.flush()
        await store.close()


@pytest.mark.parametrize("alias", ALIASES)
async def test_publish_in_a_transaction_writes_the_outbox_then_relays_once(
    redis_store: RedisHistoryStore, alias: str
) -> None:
    def work() -> list[tuple[str, str]]:
        with transaction.atomic(using=alias):
            publish("orders", {"n": 1}, using=alias)
            publish("orders", {"n": 2})
            return outbox_rows(alias)

    assert await in_db_thread(work) == [("orders", '{"n":1}'), ("orders", '{"n":2}')]
    assert await published(redis_store, "orders") == [{"n": 1}, {"n": 2}]
    assert await in_db_thread(outbox_rows, alias) == []


@pytest.mark.parametrize("alias", ALIASES)
async def test_a_rolled_back_transaction_leaves_nothing_in_the_outbox(
    redis_store: RedisHistoryStore, alias: str
) -> None:
    def work() -> None:
        with transaction.atomic(using=alias):
            publish("orders", "kept")
            try:
                with transaction.atomic(using=alias):
                    publish("orders", "rolled back")
                    raise RuntimeError("boom")
            except RuntimeError:
                pass
        try:
            with transaction.atomic(using=alias):
                publish("orders", "also rolled back")
                raise RuntimeError("boom")
        except RuntimeError:
            pass

    await in_db_thread(work)
    assert await published(redis_store, "orders") == ["kept"]
    assert await in_db_thread(outbox_rows, alias) == []


async def test_the_outbox_is_off_for_databases_it_does_not_name(
    redis_store: RedisHistoryStore,
) -> None:
    def work() -> list[tuple[str, str]]:
        with override_settings(REALTIME={}):
            set_stream_store(redis_store)
            with transaction.atomic():
                publish("orders", "after the commit")
                return outbox_rows()

    assert await in_db_thread(work) == []
    assert await published(redis_store, "orders") == ["after the commit"]


async def test_a_publication_written_in_the_transaction_outlives_a_failed_handler(
    redis_store: RedisHistoryStore,
) -> None:
    # It belongs to the transaction, not to the handler's hold.
    def work() -> None:
        outbox = Outbox(owner=_Handler())
        token = activate(outbox)
        try:
            with transaction.atomic():
                publish("orders", "committed")
            publish("orders", "held")
        finally:
            deactivate(token)
        assert settle(outbox, FAILED) == []

    await in_db_thread(work)
    assert await published(redis_store, "orders") == ["committed"]


class _Handler:
    """Stands for the consumer whose handler opened an outbox."""


async def test_a_failed_relay_leaves_the_row_for_a_later_one(
    redis_store: RedisHistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    broken = RedisHistoryStore("redis://127.0.0.1:1", prefix=redis_store.prefix)

    def work() -> None:
        set_stream_store(broken)
        with transaction.atomic():
            publish("orders", "late")

    with caplog.at_level(logging.WARNING, "django_realtime.streams"):
        await in_db_thread(work)
    assert "a process that serves streams relays it later" in caplog.text
    assert await in_db_thread(outbox_rows) == [("orders", '"late"')]
    await broken.close()

    def relay_now() -> int:
        later = timezone.now() + datetime.timedelta(seconds=2)
        return relay.relay_stale("default", _sync_publish(redis_store), 1, later)

    assert await in_db_thread(relay_now) == 1
    assert await published(redis_store, "orders") == ["late"]
    assert await in_db_thread(outbox_rows) == []


def _sync_publish(store: HistoryStore) -> relay.Publish:
    def publish_once(stream: str, data: str, key: str) -> object:
        return async_to_sync(store.publish_once)(stream, data, key)

    return publish_once


@pytest.mark.parametrize("alias", ALIASES)
async def test_a_row_relayed_again_after_a_crash_is_published_once(
    redis_store: RedisHistoryStore, alias: str
) -> None:
    # A relay published the row, then died before deleting it.
    row = await in_db_thread(
        lambda: StreamOutbox.objects.using(alias).create(stream="orders", data='"x"')
    )
    first = await redis_store.publish_once("orders", '"x"', row.key.hex)

    def relay_now() -> int:
        later = timezone.now() + datetime.timedelta(seconds=2)
        return relay.relay_stale(alias, _sync_publish(redis_store), 1, later)

    assert await in_db_thread(relay_now) == 1
    assert await published(redis_store, "orders") == ["x"]
    again = await redis_store.publish_once("orders", '"x"', row.key.hex)
    assert (again.epoch, again.offset) == (first.epoch, first.offset)
    assert await in_db_thread(outbox_rows, alias) == []


@pytest.mark.parametrize("alias", ALIASES)
async def test_rows_left_behind_are_relayed_in_id_order_once_old_enough(
    redis_store: RedisHistoryStore, alias: str
) -> None:
    def leave(count: int) -> None:
        for n in range(count):
            StreamOutbox.objects.using(alias).create(stream="orders", data=str(n))

    await in_db_thread(leave, 3)
    publish_once = _sync_publish(redis_store)

    def relay_at(seconds: float) -> int:
        now = timezone.now() + datetime.timedelta(seconds=seconds)
        return relay.relay_stale(alias, publish_once, 1, now)

    assert await in_db_thread(relay_at, 0) == 0
    assert await in_db_thread(relay_at, 2) == 3
    assert await published(redis_store, "orders") == [0, 1, 2]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
async def test_rows_another_relay_holds_are_left_to_it(
    redis_store: RedisHistoryStore,
) -> None:
    import psycopg

    rows = await in_db_thread(
        lambda: [
            StreamOutbox.objects.using("postgres").create(stream="orders", data=str(n))
            for n in range(2)
        ]
    )
    publish_once = _sync_publish(redis_store)
    later = timezone.now() + datetime.timedelta(seconds=2)
    name = connections["postgres"].settings_dict["NAME"]
    with psycopg.connect(
        f"host=127.0.0.1 port=5432 user=postgres dbname={name}"
    ) as other:
        # Another relay is busy with the first row.
        other.execute(
            "SELECT id FROM django_realtime_outbox WHERE id = %s FOR UPDATE",
            [rows[0].pk],
        )
        # Rows left behind wait for it, so that they go out in order; a
        # publisher's own rows skip it.
        assert (
            await in_db_thread(relay.relay_stale, "postgres", publish_once, 1, later)
            == 0
        )
        assert (
            await in_db_thread(
                relay.relay_rows, "postgres", [r.pk for r in rows], publish_once
            )
            == 1
        )
        assert await published(redis_store, "orders") == [1]
    assert (
        await in_db_thread(relay.relay_stale, "postgres", publish_once, 1, later) == 1
    )
    assert await published(redis_store, "orders") == [1, 0]
    assert await in_db_thread(outbox_rows, "postgres") == []


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({"DATABASES": ["nope"]}, "not a key of DATABASES"),
        ({"DATABASES": "default"}, "must be a list"),
        ({"INTERVAL": 0}, "INTERVAL"),
        ({"BATCH": 1}, "unknown key"),
    ],
)
def test_a_bad_outbox_setting_says_what_is_wrong(
    given: dict[str, object], error: str
) -> None:
    with (
        override_settings(REALTIME={"STREAM_OUTBOX": given}),
        pytest.raises(ImproperlyConfigured, match=error),
    ):
        relay.outbox_options()


def test_the_outbox_is_off_by_default() -> None:
    with override_settings(REALTIME={}):
        assert relay.outbox_options() == relay.OutboxOptions((), 5.0, 1.0)
