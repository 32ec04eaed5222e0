"""Mark tests by tier; skip those whose service is down (fail under CI=true).

The tiers are folders: ``unit`` (pure logic, no event loop, no services),
``integration`` (in-process, real Redis and PostgreSQL), ``e2e`` (real
server processes on loopback) and ``browser`` (headless Chromium). Each
test gets its folder's marker; an integration module may still mark a
single test ``e2e`` when it starts a server.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

import pytest

SERVICES = {"postgres": ("127.0.0.1", 5432), "redis": ("127.0.0.1", 6379)}


@functools.cache
def service_error(marker: str) -> str | None:
    host, port = SERVICES[marker]
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as error:
        return f"{marker} is not reachable on {host}:{port}: {error}"
    return None


TIERS = ("unit", "integration", "e2e", "browser")
_ROOT = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = os.path.relpath(str(item.path), _ROOT)
        tier = relative.split(os.sep, 1)[0]
        if tier in TIERS:
            item.add_marker(tier)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in SERVICES:
        if item.get_closest_marker(marker) is None:
            continue
        error = service_error(marker)
        if error is None:
            continue
        if os.environ.get("CI") == "true":
            pytest.fail(f"{error} (required under CI=true)")
        pytest.skip(error)


def _terminate_other_backends() -> None:
    import time

    import psycopg
    from django.db import connections

    own = connections["postgres"]
    keep = own.connection.info.backend_pid if own.connection is not None else None
    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
    ) as admin:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s"
        args = [own.settings_dict["NAME"], keep or 0]
        for (pid,) in admin.execute(query, args).fetchall():
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 5
        while admin.execute(query, args).fetchall():
            assert time.monotonic() < deadline, "backends did not end"
            time.sleep(0.02)
    # The threads that held them (the sync pool, the async ORM's thread) may
    # serve the next test: have Django check those connections before their
    # next query, as it does at a request's start, instead of failing on it.
    from django_realtime.delivery import db as realtime_db

    for opened in list(realtime_db._opened.values()):
        for connection in list(opened):
            if connection is not own and not connection.in_atomic_block:
                connection.health_check_done = False


@pytest.fixture(autouse=True)
def _release_postgres_backends(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """End PostgreSQL backends that threads other than the test's still hold.

    Connections opened by the sync pool and the async ORM's thread outlive a
    test; left open, they stop the test database from being dropped. Health
    checks on the alias replace them if a later test uses those threads.
    """
    yield
    if request.node.get_closest_marker("postgres") is not None and not service_error(
        "postgres"
    ):
        _terminate_other_backends()


@pytest.fixture(scope="session")
def example_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the example project's database once per run; modules copy it.

    Migrating and creating the users takes four ``manage.py`` processes;
    ``example_db`` (tests/e2e/example/test_chat_e2e.py) hands each module a
    copy of this file.
    """
    from tests.e2e.example.test_chat_e2e import build_example_db

    db_path = tmp_path_factory.mktemp("example-template") / "db.sqlite3"
    build_example_db(db_path)
    return db_path
