"""Fixtures that build every history store the same way.

The store contract suite (test_store_contract.py) runs once per store in
:data:`STORES`. Each test gets a ``make`` factory, so that a test can open
two stores on one backend (two processes sharing Redis) and set policies.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.utils.module_loading import import_string

from django_realtime.streams.stores.base import HistoryStore, PolicyTable

REDIS_URL = "redis://127.0.0.1:6379"


@dataclass
class StoreSpec:
    """Say how to build one store and what it lacks by design."""

    id: str
    backend: str
    redis: bool
    lacks: dict[str, str] = field(default_factory=dict)
    #: The store keeps streams in a file: each test gets a new one.
    file: bool = False
    #: Options every store of the spec gets, and marks of its tests.
    options: dict[str, Any] = field(default_factory=dict)
    marks: list[Any] = field(default_factory=list)


STORES = [
    StoreSpec(
        "memory",
        "django_realtime.streams.stores.MemoryHistoryStore",
        redis=False,
        lacks={"shared": "the in-memory store lives in one process"},
    ),
    StoreSpec(
        "redis", "django_realtime.streams.stores.redis.RedisHistoryStore", redis=True
    ),
    StoreSpec(
        "sqlite",
        "django_realtime.streams.stores.sqlite.SQLiteHistoryStore",
        redis=False,
        file=True,
    ),
    StoreSpec(
        "postgres",
        "django_realtime.streams.stores.postgres.PostgresHistoryStore",
        redis=False,
        options={"alias": "postgres"},
        marks=[
            pytest.mark.postgres,
            # Only for the test database: the layer has connections of its own.
            pytest.mark.django_db(databases=["default", "postgres"]),
        ],
    ),
]


class FakeClock:
    """Stand in for time.time: time passes only when told to."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _redis_reason() -> str | None:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError as exc:
        return f"Redis is not reachable at 127.0.0.1:6379 ({exc})"
    return None


class StoreCase:
    """One store implementation under test, and a factory for its stores."""

    def __init__(self, spec: StoreSpec, directory: Any = None) -> None:
        self.spec = spec
        self.directory = directory
        self.clock = FakeClock()
        # Streams of one test never meet those of another, or of a rerun.
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.stores: list[HistoryStore] = []

    def require(self, feature: str) -> None:
        """Skip the test if this store lacks ``feature`` by design."""
        if feature in self.spec.lacks:
            pytest.skip(reason=f"Not applicable: {self.spec.lacks[feature]}.")

    def stream(self, name: str = "s") -> str:
        """Return a stream name private to this test."""
        return f"{self.prefix}.{name}"

    def make(
        self, policies: dict[str, Any] | None = None, **options: Any
    ) -> HistoryStore:
        """Build a store; stores of one test share one backend."""
        cls = import_string(self.spec.backend)
        if self.spec.redis:
            options.setdefault("url", REDIS_URL)
            options.setdefault("prefix", self.prefix)
        if self.spec.file:
            options.setdefault("path", self.directory / "streams.sqlite3")
        options = {**self.spec.options, **options}
        table = PolicyTable(
            {
                f"{self.prefix}.{pattern}": policy
                for pattern, policy in (policies or {}).items()
            }
        )
        store: HistoryStore = cls(policies=table, clock=self.clock, **options)
        if not (self.spec.redis or self.spec.file or self.spec.options) and self.stores:
            # One process: "another store" is the same memory.
            return self.stores[0]
        self.stores.append(store)
        return store


@pytest.fixture(
    params=[pytest.param(spec, id=spec.id, marks=spec.marks) for spec in STORES]
)
async def case(request: pytest.FixtureRequest) -> AsyncIterator[StoreCase]:
    """Yield a :class:`StoreCase`; close its stores afterwards."""
    spec: StoreSpec = request.param
    if spec.redis and (reason := _redis_reason()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)
    directory = request.getfixturevalue("tmp_path") if spec.file else None
    store_case = StoreCase(spec, directory)
    yield store_case
    for store in store_case.stores:
        # Each test has its own prefix: flushing removes its Redis keys.
        await store.flush()
        await store.close()
