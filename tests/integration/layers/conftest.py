"""Fixtures that build every channel layer the same way: from CHANNEL_LAYERS.

The contract suite runs once per layer in :data:`LAYERS`. Each layer is
configured only through a ``CHANNEL_LAYERS``-style dict handed to a
:class:`~django_realtime.layers.ChannelLayerManager`, as a project would.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from django_realtime.layers import ChannelLayer, ChannelLayerManager

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}"

# One prefix per test run, so that runs sharing the Redis server don't meet.
RUN_PREFIX = f"drt{uuid.uuid4().hex[:8]}"


class FakeClock:
    """Stand in for time.monotonic: time passes only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class LayerSpec:
    """Say how to configure one layer and what it lacks by design."""

    id: str
    backend: str
    redis: bool
    lacks: dict[str, str] = field(default_factory=dict)
    #: The layer keeps its state in a file: each test gets a new one.
    file: bool = False
    #: The expiry the expiry tests configure. Redis expires keys on its own
    #: clock, so real time must pass; channels-redis counts whole seconds.
    short_expiry: float = 1
    #: For a layer on a service of its own: return its CONFIG, given the
    #: test's prefix (skip if the service is down). Such a layer expires on
    #: the service's clock, so real time must pass.
    service: Callable[[str], dict[str, Any]] | None = None
    #: More marks for the layer's tests (the databases they use).
    marks: list[Any] = field(default_factory=list)


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


def rabbitmq_config(prefix: str) -> dict[str, Any]:
    """Return the RabbitMQ layer's CONFIG; skip (or fail, under CI) if it is down."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError as error:
        reason = f"RabbitMQ is not reachable at 127.0.0.1:5672: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)
    return {"url": RABBITMQ_URL, "prefix": prefix}


PUBSUB_IS_FIRE_AND_FORGET = (
    "RedisPubSubChannelLayer publishes to live subscribers and keeps no queue"
)

LAYERS = [
    LayerSpec("memory", "django_realtime.layers.InMemoryChannelLayer", redis=False),
    LayerSpec("redis", "channels_redis.core.RedisChannelLayer", redis=True),
    LayerSpec(
        "realtime-redis",
        "django_realtime.layers.redis.RedisChannelLayer",
        redis=True,
        short_expiry=0.25,
    ),
    LayerSpec(
        "sqlite",
        "django_realtime.layers.sqlite.SQLiteChannelLayer",
        redis=False,
        file=True,
    ),
    LayerSpec(
        "rabbitmq",
        "django_realtime.layers.rabbitmq.RabbitMQChannelLayer",
        redis=False,
        short_expiry=0.25,
        service=rabbitmq_config,
        # One broker for the run: under pytest-xdist, every RabbitMQ test runs
        # on one worker, so the restart test cannot cut another's connection.
        marks=[pytest.mark.xdist_group("rabbitmq")],
    ),
    LayerSpec(
        "postgres",
        "django_realtime.layers.postgres.PostgresChannelLayer",
        redis=False,
        short_expiry=0.25,
        service=lambda prefix: {"alias": "postgres"},
        marks=[
            pytest.mark.postgres,
            # Only for the test database: the layer has connections of its own.
            pytest.mark.django_db(databases=["default", "postgres"]),
        ],
    ),
    LayerSpec(
        "redis-pubsub",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        redis=True,
        lacks={
            "capacity": f"{PUBSUB_IS_FIRE_AND_FORGET}, so it has no capacity",
            "expiry": f"{PUBSUB_IS_FIRE_AND_FORGET}, so messages do not expire",
            "group_expiry": "RedisPubSubChannelLayer keeps group memberships "
            "until group_discard; it has no group_expiry",
            "name_validation": "RedisPubSubChannelLayer does not validate "
            "channel or group names",
            "process_local_names": "RedisPubSubChannelLayer names are plain "
            "Redis pub/sub channels, without the process-local '!'",
            "cancel_safe_receive": "RedisPubSubChannelLayer unsubscribes a "
            "channel when a receive on it is cancelled; messages published "
            "before the next receive subscribes again are lost",
        },
    ),
]


def _redis_unreachable_reason() -> str | None:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1):
            return None
    except OSError as error:
        return f"Redis is not reachable at {REDIS_URL}: {error}"


@pytest.fixture(scope="session")
def redis_available() -> None:
    """Skip (or under CI=true, fail) when the Redis server is down."""
    reason = _redis_unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)


@dataclass
class LayerCase:
    """One layer under test, with what the contract suite needs around it."""

    spec: LayerSpec
    make: Callable[..., ChannelLayer]
    advance: Callable[[float], Awaitable[None]]
    layer: ChannelLayer

    @property
    def id(self) -> str:
        return self.spec.id

    def require(self, feature: str) -> None:
        """Skip the test, naming the reason, if this layer lacks ``feature``."""
        if feature in self.spec.lacks:
            pytest.skip(reason=f"Not applicable: {self.spec.lacks[feature]}.")

    async def channel(self, label: str = "plain", layer: Any = None) -> str:
        """Return a fresh channel name without '!', ready to receive on.

        Pub/sub only delivers to channels already subscribed, and only
        ``new_channel()`` subscribes ahead of a receive, so that is how a
        pub/sub channel is made; the others get a plain unique name.
        """
        layer = layer or self.layer
        if self.id == "redis-pubsub":
            name: str = await layer.new_channel(f"{label}.")
            return name
        return f"{label}.{uuid.uuid4().hex}"


@pytest.fixture(
    params=[
        pytest.param(
            spec,
            id=spec.id,
            marks=[*([pytest.mark.redis] if spec.redis else []), *spec.marks],
        )
        for spec in LAYERS
    ]
)
async def case(
    request: pytest.FixtureRequest,
) -> AsyncIterator[LayerCase]:
    """Build the layer under test from a CHANNEL_LAYERS dict; flush it after."""
    spec: LayerSpec = request.param
    if spec.redis:
        request.getfixturevalue("redis_available")
    clock = FakeClock()
    test_prefix = f"{RUN_PREFIX}.{uuid.uuid4().hex[:8]}."
    built: list[Any] = []

    def make(**config: Any) -> ChannelLayer:
        if spec.redis:
            config = {"hosts": [REDIS_URL], "prefix": test_prefix, **config}
        elif spec.service is not None:
            config = {**spec.service(test_prefix), **config}
        elif spec.file:
            path = request.getfixturevalue("tmp_path") / "layer.sqlite3"
            config = {"path": path, "clock": clock, **config}
        else:
            config = {"clock": clock, **config}
        manager = ChannelLayerManager(
            {"default": {"BACKEND": spec.backend, "CONFIG": config}}
        )
        layer = manager["default"]
        built.append(layer)
        return layer

    async def advance(seconds: float) -> None:
        if spec.redis or spec.service is not None:
            # Redis applies expiry on its own clock: real time must pass.
            await asyncio.sleep(seconds)
        else:
            clock.now += seconds

    yield LayerCase(spec, make, advance, make())
    for layer in built:
        await layer.flush()
        close = getattr(layer, "close_pools", None) or getattr(layer, "close", None)
        if close is not None:
            await close()
