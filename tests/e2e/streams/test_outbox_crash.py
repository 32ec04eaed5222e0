"""A committed publication survives its publisher's death, and arrives once.

The publisher (a subprocess, :mod:`tests.e2e.streams.outbox_peer`) publishes
inside a transaction with the stream outbox on and the Redis store, and
dies: right at its commit, before relaying the row; or once the relay has
published the row, before deleting it. A uvicorn server serving streams
relays what was left, and its subscribed client gets the publication
exactly once: a marker published afterwards is the next frame it gets.
``runworker`` relays what was left too.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from django_realtime.streams.positions import Position
from django_realtime.streams.stores.redis import RedisHistoryStore
from tests.e2e.streams.outbox_peer import DIED
from tests.servers import ROOT, serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

PEER = "tests.e2e.streams.outbox_peer"
APPLICATION = "tests.integration.streams.daphne_app:application"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at 127.0.0.1:6379 ({exc})")
        pytest.skip(f"Redis is not reachable at 127.0.0.1:6379 ({exc})")
    return {
        "DJANGO_SETTINGS_MODULE": PEER,
        "OUTBOX_DB": str(tmp_path / "db.sqlite3"),
        "OUTBOX_PREFIX": f"t{uuid.uuid4().hex[:10]}",
    }


@pytest.fixture
async def store(env: dict[str, str]) -> AsyncIterator[RedisHistoryStore]:
    store = RedisHistoryStore(prefix=env["OUTBOX_PREFIX"])
    yield store
    await store.flush()
    await store.close()


async def run_peer(env: dict[str, str], *args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        PEER,
        *args,
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
    )
    return await asyncio.wait_for(process.wait(), 30)


async def frame(websocket: ClientConnection) -> dict[str, Any]:
    received: dict[str, Any] = json.loads(await asyncio.wait_for(websocket.recv(), 20))
    return received


def outbox_rows(database: str) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute(
            "SELECT COUNT(*) FROM django_realtime_outbox"
        ).fetchone()
        return int(count)


async def relayed(database: str) -> None:
    """Return once the server has relayed and deleted every outbox row."""
    for _ in range(400):  # 20 s
        if not outbox_rows(database):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"The outbox of {database} still has rows after 20 s.")


@pytest.mark.parametrize("death", ["die-after-commit", "die-after-relay"])
async def test_a_publication_whose_publisher_died_after_the_commit_arrives_once(
    env: dict[str, str], store: RedisHistoryStore, tmp_path: Path, death: str
) -> None:
    assert await run_peer(env, "migrate") == 0
    with serving("uvicorn", APPLICATION, env, tmp_path / "server.log") as server:
        url = f"ws://127.0.0.1:{server.port}/ws/streams/"
        async with connect(url, open_timeout=10) as websocket:
            await websocket.send(
                json.dumps({"kind": "subscribe", "id": 1, "stream": "orders"})
            )
            assert (await frame(websocket))["kind"] == "subscribed"

            assert await run_peer(env, death, "orders", "order 1") == DIED
            first = await frame(websocket)
            assert (first["kind"], first["data"]) == ("publication", "order 1")
            # The server has relayed (or found published) and deleted the row.
            await relayed(env["OUTBOX_DB"])
            await store.publish("orders", '"marker"')
            second = await frame(websocket)
            assert (second["kind"], second["data"]) == ("publication", "marker")
            assert second["offset"] == first["offset"] + 1


async def test_runworker_relays_what_a_dead_publisher_left(
    env: dict[str, str], store: RedisHistoryStore, tmp_path: Path
) -> None:
    assert await run_peer(env, "migrate") == 0
    assert await run_peer(env, "die-after-commit", "jobs", "job 1") == DIED
    assert outbox_rows(env["OUTBOX_DB"]) == 1
    with (tmp_path / "worker.log").open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "django",
            "runworker",
            "nothing",
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await relayed(env["OUTBOX_DB"])
        finally:
            worker.terminate()
            assert await asyncio.wait_for(worker.wait(), 30) == 0
    epoch = (await store.read("jobs")).epoch
    history = await store.read("jobs", Position(epoch, 0))
    assert [p.data for p in history.publications] == ['"job 1"']
