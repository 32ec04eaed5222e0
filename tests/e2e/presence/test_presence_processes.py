"""Two real server processes share presence through Redis.

A process killed with SIGKILL says goodbye for none of its members: the
other sweeps them once its heartbeats have been silent for the expiry
(3 s here). A cut of every Redis connection converges to the exact set.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from django_realtime.testing import LiveServer
from tests.e2e.presence.client import Member, Watcher

APPLICATION = "tests.e2e.presence.app:application"

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(120)]


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LiveServer, LiveServer]]:
    prefix = f"pe2e-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PRESENCE_E2E_PREFIX", prefix)
    with (
        LiveServer(APPLICATION, databases=()) as one,
        LiveServer(APPLICATION, databases=()) as two,
    ):
        yield one, two
    redis = Redis()
    keys = list(redis.scan_iter(f"{prefix}:*"))
    if keys:
        redis.delete(*keys)
    redis.close()


async def test_the_100_members_of_a_killed_process_leave_and_no_one_else(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    one, two = servers
    watcher = Watcher(two.ws_url, "watcher", "room.k")
    await watcher.open()
    stays = [Member(two.ws_url, f"stay{n}", "room.k") for n in range(3)]
    doomed = [Member(one.ws_url, f"doomed{n}", "room.k") for n in range(100)]
    await asyncio.gather(*(m.open() for m in stays + doomed))
    everyone = {"watcher"} | {f"stay{n}" for n in range(3)}
    await watcher.until(everyone | {f"doomed{n}" for n in range(100)}, 30)
    one.kill()
    await watcher.until(everyone, 30)
    assert set(watcher.leaves) == {f"doomed{n}" for n in range(100)}
    for member in [watcher, *stays]:
        await member.close()


async def test_a_cut_of_every_redis_connection_converges(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    one, two = servers
    watcher = Watcher(two.ws_url, "watcher", "room.c")
    await watcher.open()
    members = [Member((one, two)[n % 2].ws_url, f"m{n}", "room.c") for n in range(10)]
    await asyncio.gather(*(m.open() for m in members))
    await watcher.until({"watcher"} | {f"m{n}" for n in range(10)}, 30)
    redis = Redis()
    prefix = watcher_prefix()
    killed = 0
    for client in redis.client_list():
        if client["name"].startswith(prefix):
            redis.client_kill_filter(_id=client["id"])
            killed += 1
    assert killed
    # Meanwhile, some leave and some arrive, on both processes.
    for member in members[:4]:
        await member.close()
    late = [Member((one, two)[n % 2].ws_url, f"late{n}", "room.c") for n in range(4)]
    await asyncio.gather(*(m.open() for m in late))
    expected = {"watcher"} | {f"m{n}" for n in range(4, 10)}
    expected |= {f"late{n}" for n in range(4)}
    await watcher.until(expected, 30)
    redis.close()
    for member in [watcher, *members[4:], *late]:
        await member.close()


def watcher_prefix() -> str:
    import os

    return os.environ["PRESENCE_E2E_PREFIX"]
