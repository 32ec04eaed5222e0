"""Database connections around consumer handlers, on real PostgreSQL and SQLite."""

import time
from unittest import mock

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import TestCase

from django_realtime.consumers import AsyncWebsocketConsumer, WebsocketConsumer
from django_realtime.delivery import db
from django_realtime.delivery.db import close_old_connections, is_due_to_close
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(60)

PG = "postgres"


def backend_pid(alias=PG):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


class AsyncPid(AsyncWebsocketConsumer):
    channel_layer_alias = None
    alias = PG

    async def receive(self, text_data=None, bytes_data=None):
        # Django's async ORM runs queries in asgiref's thread-sensitive
        # thread; so does this.
        await self.send(text_data=str(await sync_to_async(backend_pid)(self.alias)))


class SyncPid(WebsocketConsumer):
    channel_layer_alias = None
    alias = PG

    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data=str(backend_pid(self.alias)))


def admin_query(sql, params=()):
    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
    ) as admin:
        return admin.execute(sql, params).fetchall()


def backends():
    name = connections[PG].settings_dict["NAME"]
    return admin_query("SELECT pid FROM pg_stat_activity WHERE datname = %s", [name])


def settled_backend_count(at_most, timeout=5):
    """Return the backend count once it is at most ``at_most``, or at the deadline.

    A backend leaves pg_stat_activity shortly after its client closes the
    connection, not at once.
    """
    deadline = time.monotonic() + timeout
    while (count := len(backends())) > at_most and time.monotonic() < deadline:
        time.sleep(0.02)
    return count


def wait_until_gone(pid, timeout=5):
    deadline = time.monotonic() + timeout
    while admin_query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]):
        assert time.monotonic() < deadline, f"backend {pid} did not go away"
        time.sleep(0.02)


@pytest.fixture
def pg_settings():
    """Change the postgres alias' settings for one test, then restore them."""
    settings = connections[PG].settings_dict
    saved = dict(settings)
    connections[PG].close()
    yield settings
    connections[PG].close()
    settings.clear()
    settings.update(saved)


@pytest.fixture(params=["attributes read", "Django decides"])
def django_internals(request, monkeypatch):
    """Run a test with Django's connection attributes read, and without.

    Without is what a Django outside the versions checked gets.
    """
    monkeypatch.setattr(db, "_supported", request.param == "attributes read")


async def one_message(communicator):
    await communicator.send_to(text_data="pid?")
    return int(await communicator.receive_from(timeout=5))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=[PG])
@pytest.mark.parametrize("consumer", [AsyncPid, SyncPid])
async def test_backend_terminated_between_messages_is_replaced(
    consumer, pg_settings, django_internals
):
    pg_settings["CONN_MAX_AGE"] = 60
    pg_settings["CONN_HEALTH_CHECKS"] = True
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/ws/")
    assert (await communicator.connect())[0]
    used = {await one_message(communicator) for _ in range(5)}
    # Persistent connections are reused between messages: one per thread
    # that ran a handler (the async ORM's thread, or sync pool threads).
    assert len(used) < 5
    # The server drops every connection those threads hold...
    killed = [pid for (pid,) in await sync_to_async(backends)()]
    assert used <= set(killed)
    for pid in killed:
        await sync_to_async(admin_query)("SELECT pg_terminate_backend(%s)", [pid])
        await sync_to_async(wait_until_gone)(pid)
    # ...and the next handler's query runs on a fresh one.
    assert await one_message(communicator) not in killed
    await communicator.disconnect()


async def cycles(consumer, count, alias=PG):
    pids = set()
    for _ in range(count):
        communicator = WebsocketCommunicator(consumer.as_asgi(alias=alias), "/ws/")
        assert (await communicator.connect())[0]
        pids.add(await one_message(communicator))
        await communicator.disconnect()
    return pids


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=[PG])
@pytest.mark.parametrize("consumer", [AsyncPid, SyncPid])
async def test_connect_disconnect_cycles_leave_no_backends_behind(
    consumer, pg_settings
):
    pg_settings["CONN_MAX_AGE"] = 0
    before = len(await sync_to_async(backends)())
    await cycles(consumer, 200)
    assert await sync_to_async(settled_backend_count)(before) == before


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=[PG])
@pytest.mark.parametrize("consumer", [AsyncPid, SyncPid])
async def test_persistent_connections_are_reused_across_cycles(consumer, pg_settings):
    pg_settings["CONN_MAX_AGE"] = 60
    before = len(await sync_to_async(backends)())
    pids = await cycles(consumer, 200)
    # One connection per thread that ran a handler, not one per cycle.
    assert len(pids) <= 17
    limit = before + len(pids)
    assert await sync_to_async(settled_backend_count)(limit) <= limit


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=[PG, "postgres_pool"])
@pytest.mark.parametrize("consumer", [AsyncPid, SyncPid])
async def test_connection_pool_bounds_backends_over_cycles(consumer, pg_settings):
    pool_size = connections["postgres_pool"].settings_dict["OPTIONS"]["pool"][
        "max_size"
    ]
    before = len(await sync_to_async(backends)())
    try:
        await cycles(consumer, 200, alias="postgres_pool")
        limit = before + pool_size
        assert await sync_to_async(settled_backend_count)(limit) <= limit
    finally:
        await sync_to_async(connections["postgres_pool"].close_pool)()


class TransactionSurvivesDisconnect(TestCase):
    """A consumer's cleanup must not break the test's transaction.

    Channels closes the connection on disconnect, so a query after
    ``await communicator.disconnect()`` inside a TestCase fails
    (channels#1091, #2118).
    """

    databases = {"default", PG}

    def check(self, alias):
        User.objects.using(alias).create(username="alice")

        class CountUsers(AsyncWebsocketConsumer):
            channel_layer_alias = None

            async def receive(self, text_data=None, bytes_data=None):
                count = await User.objects.using(alias).acount()
                await self.send(text_data=str(count))

        async def scenario():
            communicator = WebsocketCommunicator(CountUsers.as_asgi(), "/ws/")
            assert (await communicator.connect())[0]
            await communicator.send_to(text_data="count")
            seen = await communicator.receive_from()
            await communicator.disconnect()
            return seen

        # The consumer sees the test's uncommitted row: same connection.
        assert async_to_sync(scenario)() == "1"
        assert User.objects.using(alias).filter(username="alice").exists()

    def test_query_after_disconnect_works_on_sqlite(self):
        self.check("default")

    def test_query_after_disconnect_works_without_django_internals(self):
        with mock.patch.object(db, "_supported", False):
            self.check("default")

    @pytest.mark.postgres
    def test_query_after_disconnect_works_on_postgresql(self):
        self.check(PG)


@pytest.mark.django_db(transaction=True)
def test_close_old_connections_leaves_an_atomic_block_alone(django_internals):
    from django.db import transaction

    connection = connections["default"]
    connection.ensure_connection()
    with transaction.atomic():
        connection.close_at = 0  # long past
        assert not is_due_to_close(connection, now=time.monotonic())
        close_old_connections()
        assert connection.connection is not None
    assert is_due_to_close(connection, now=time.monotonic())
    close_old_connections()
    assert connection.connection is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=[PG])
def test_a_boundary_leaves_another_threads_transaction_alone():
    """A consumer's boundary does not touch a connection mid-transaction.

    A plain thread (a writer outside the sync pool) is inside ``atomic()``
    when a consumer's boundary runs on the event loop: its connection must
    not be marked for a health check, which would ping and maybe close it
    inside the transaction.
    """
    import threading

    from django.db import transaction

    inside, boundary_done = threading.Event(), threading.Event()
    seen = {}

    def writer():
        connection = connections[PG]
        try:
            with transaction.atomic(using=PG):
                backend_pid()
                seen["before"] = connection.health_check_done
                inside.set()
                assert boundary_done.wait(5)
                seen["after"] = connection.health_check_done
                backend_pid()
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert inside.wait(5)
        async_to_sync(db.aclose_old_connections)()
    finally:
        boundary_done.set()
        thread.join(5)
    assert seen == {"before": True, "after": True}
