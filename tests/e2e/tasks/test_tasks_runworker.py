"""A task enqueued here runs in a real ``runworker`` process.

The test process and the worker share the test database file, a SQLite
channel layer and a SQLite history store; the result is read back with
``get_result()`` and the progress from the task's stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip(
        "django.tasks is new in Django 6.0 (django_realtime.tasks needs it)",
        allow_module_level=True,
    )

from asgiref.sync import async_to_sync
from django.db import connection
from django.tasks import TaskResultStatus

from django_realtime.streams import Position
from django_realtime.streams.stores.sqlite import SQLiteHistoryStore
from django_realtime.tasks import stream_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(60),
]

ROOT = Path(__file__).resolve().parents[3]
WAIT = 30.0


@pytest.fixture
def env(tmp_path: Path, settings: Any) -> dict[str, str]:
    """Point this process and the worker at the same files."""
    paths = {
        "TASKS_E2E_DATABASE": str(connection.settings_dict["NAME"]),
        "TASKS_E2E_LAYER": str(tmp_path / "layer.sqlite3"),
        "TASKS_E2E_STORE": str(tmp_path / "store.sqlite3"),
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "django_realtime.layers.sqlite.SQLiteChannelLayer",
            "CONFIG": {"path": paths["TASKS_E2E_LAYER"]},
        }
    }
    settings.TASKS = {
        "default": {"BACKEND": "django_realtime.tasks.ChannelLayerTaskBackend"}
    }
    return paths


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "runworker", "tasks.default"],
        cwd=ROOT,
        env={
            **os.environ,
            **env,
            "DJANGO_SETTINGS_MODULE": "tests.e2e.tasks.settings",
            "PYTHONPATH": str(ROOT),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()
    log.close()


def test_a_task_enqueued_here_runs_in_runworker_and_its_result_is_read_here(
    env: dict[str, str], worker: Any, tmp_path: Path
) -> None:
    from tests.e2e.tasks.app import multiply

    enqueued = multiply.enqueue(6, 7)

    async def outcome() -> Any:
        async with asyncio.timeout(WAIT):
            while True:
                result = await multiply.aget_result(enqueued.id)
                if result.is_finished:
                    return result
                await asyncio.sleep(0.05)

    result = async_to_sync(outcome)()
    log = (tmp_path / "worker.log").read_text()
    assert result.status == TaskResultStatus.SUCCESSFUL, log
    assert result.return_value == 42
    assert result.worker_ids == [f"{os.uname().nodename}:{worker.pid}"]

    async def history() -> list[Any]:
        # The outcome is published just after the result is saved: read
        # until it is there (or the wait is over).
        store = SQLiteHistoryStore(env["TASKS_E2E_STORE"])
        stream = stream_for(enqueued.id)
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    newest = (await store.read(stream)).position
                    read = await store.read(stream, Position(newest.epoch, 0))
                    kinds = [json.loads(p.data)["type"] for p in read.publications]
                    if "task.finished" in kinds:
                        return kinds
                    await asyncio.sleep(0.05)
        finally:
            await store.close()

    assert async_to_sync(history)() == [
        "task.started",
        "task.progress",
        "task.finished",
    ]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=WAIT) == 0
