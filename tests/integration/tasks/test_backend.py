"""ChannelLayerTaskBackend in process: enqueue, a real Worker, get_result().

The worker is :class:`~django_realtime.worker.Worker`, as ``runworker`` runs
it, fed from the in-memory channel layer through
:class:`~django_realtime.tasks.TaskWorkerApplication`; results are read back
from the database through Django's ``get_result()``. A real ``runworker``
process on the SQLite layer: tests/e2e/tasks/test_tasks_runworker.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip(
        "django.tasks is new in Django 6.0 (django_realtime.tasks needs it)",
        allow_module_level=True,
    )

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import transaction
from django.tasks import TaskResult, TaskResultStatus, default_task_backend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist

from django_realtime.layers import get_channel_layer
from django_realtime.models import TaskRecord
from django_realtime.streams import Position, set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.tasks import (
    ChannelLayerTaskBackend,
    TaskWorkerApplication,
    acan_follow,
    channel_for,
    enqueued_by,
    progress,
    stream_for,
)
from django_realtime.tasks.messages import run_message
from django_realtime.worker import Worker
from tests.integration.tasks import jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

WAIT = 10.0
BACKEND = "django_realtime.tasks.ChannelLayerTaskBackend"


@pytest.fixture(autouse=True)
def _tasks_settings(settings: Any) -> None:
    settings.TASKS = {"default": {"BACKEND": BACKEND, "QUEUES": ["default", "slow"]}}
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}
    }


@pytest.fixture(autouse=True)
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore()
    old = set_stream_store(fresh)
    yield fresh
    set_stream_store(old)


@pytest.fixture(autouse=True)
def _calls() -> None:
    jobs.CALLS.clear()


class Workers:
    """Start Workers on task channels; stop them all at the end."""

    def __init__(self) -> None:
        self.running: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(
        self, name: str = "worker-1", shutdown_timeout: float = WAIT
    ) -> tuple[Worker, asyncio.Task[None]]:
        worker = Worker(
            TaskWorkerApplication(name),
            [channel_for("default")],
            get_channel_layer(),
            shutdown_timeout=shutdown_timeout,
        )
        started = (worker, asyncio.create_task(worker.run()))
        self.running.append(started)
        return started

    async def stop_all(self) -> None:
        for worker, task in self.running:
            worker.stop()
            await task


@pytest.fixture
async def workers() -> AsyncIterator[Workers]:
    started = Workers()
    yield started
    await started.stop_all()


async def finished(result: TaskResult[Any, Any]) -> TaskResult[Any, Any]:
    """Wait until the task is finished; return its result as stored."""
    async with asyncio.timeout(WAIT):
        while True:
            fresh = await default_task_backend.aget_result(result.id)
            if fresh.is_finished:
                return fresh
            await asyncio.sleep(0.01)


async def status_of(task_id: str) -> str:
    record = await TaskRecord.objects.aget(pk=task_id)
    return record.status


async def published(store: MemoryHistoryStore, task_id: str) -> list[Any]:
    stream = stream_for(task_id)
    newest = (await store.read(stream)).position
    history = await store.read(stream, Position(newest.epoch, 0))
    return [json.loads(publication.data) for publication in history.publications]


async def test_a_task_runs_in_the_worker_and_any_reader_gets_its_result(
    workers: Workers,
) -> None:
    workers.start("worker-1")

    enqueued = await jobs.add.aenqueue(2, 3)

    assert enqueued.status == TaskResultStatus.READY
    result = await finished(enqueued)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.args == [2, 3]
    assert result.worker_ids == ["worker-1"]
    assert result.attempts == 1
    assert result.enqueued_at is not None
    assert result.started_at is not None
    assert result.finished_at is not None
    assert result.finished_at >= result.started_at
    # Django's own entry points, sync and async, read the same row.
    again = await sync_to_async(jobs.add.get_result)(enqueued.id)
    assert again.return_value == 5
    await enqueued.arefresh()
    assert enqueued.status == TaskResultStatus.SUCCESSFUL


async def test_a_failure_is_recorded_with_its_class_and_traceback(
    workers: Workers, store: MemoryHistoryStore
) -> None:
    workers.start()

    result = await finished(await jobs.fail.aenqueue("no luck"))

    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError
    assert error.exception_class_path == "builtins.ValueError"
    assert "no luck" in error.traceback
    assert "Traceback" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    outcome = (await published(store, result.id))[-1]
    assert outcome == {
        "type": "task.finished",
        "id": result.id,
        "status": "FAILED",
        "error": "builtins.ValueError",
    }


async def test_a_return_value_that_is_not_json_fails_the_task(
    workers: Workers,
) -> None:
    workers.start()

    result = await finished(await jobs.unserialisable.aenqueue())

    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.TypeError"


async def test_a_message_delivered_twice_runs_the_task_once(
    workers: Workers,
) -> None:
    first = await jobs.count.aenqueue("once")
    layer = get_channel_layer()
    assert layer is not None
    await layer.send(channel_for("default"), run_message(first.id, "default"))
    second = await jobs.count.aenqueue("after")
    workers.start()

    # One channel delivers in order: the duplicate was handled before this.
    await finished(second)

    assert jobs.CALLS == ["once", "after"]
    result = await finished(first)
    assert result.attempts == 1
    assert result.return_value == "once"


async def test_a_sync_task_reports_progress_then_its_outcome_on_its_stream(
    workers: Workers, store: MemoryHistoryStore
) -> None:
    workers.start()

    result = await finished(await jobs.report.aenqueue(3))

    assert await published(store, result.id) == [
        {"type": "task.started", "id": result.id, "attempt": 1},
        {"type": "task.progress", "id": result.id, "data": {"step": 1}},
        {"type": "task.progress", "id": result.id, "data": {"step": 2}},
        {"type": "task.progress", "id": result.id, "data": {"step": 3}},
        {
            "type": "task.finished",
            "id": result.id,
            "status": "SUCCESSFUL",
            "return_value": "done",
        },
    ]


async def test_an_async_task_with_context_runs_on_the_loop_and_reports(
    workers: Workers, store: MemoryHistoryStore
) -> None:
    workers.start()

    result = await finished(await jobs.areport.aenqueue(2))

    assert result.return_value == {"attempt": 1, "id": result.id}
    kinds = [data["type"] for data in await published(store, result.id)]
    assert kinds == ["task.started", "task.progress", "task.progress", "task.finished"]


async def test_sync_enqueue_in_a_transaction_sends_at_the_commit_and_not_on_rollback(
    workers: Workers,
) -> None:
    def enqueue_then_roll_back() -> str:
        enqueued: list[str] = []
        with contextlib.suppress(RuntimeError), transaction.atomic():
            enqueued.append(jobs.count.enqueue("rolled back").id)
            raise RuntimeError("roll back")
        return enqueued[0]

    def enqueue_in_transaction() -> TaskResult[Any, Any]:
        with transaction.atomic():
            return jobs.count.enqueue("committed")

    doomed_id = await sync_to_async(enqueue_then_roll_back)()
    committed = await sync_to_async(enqueue_in_transaction)()
    workers.start()

    await finished(committed)
    assert jobs.CALLS == ["committed"]
    with pytest.raises(TaskResultDoesNotExist):
        await default_task_backend.aget_result(doomed_id)


async def test_a_worker_stopped_mid_task_puts_it_back_for_another_worker(
    workers: Workers, store: MemoryHistoryStore
) -> None:
    worker, running = workers.start("worker-1", shutdown_timeout=0)
    enqueued = await jobs.hang_first_time.aenqueue()
    async with asyncio.timeout(WAIT):
        while True:
            if await published(store, enqueued.id):  # task.started
                break
            await asyncio.sleep(0.01)

    worker.stop()
    await running

    assert await status_of(enqueued.id) == "READY"
    workers.start("worker-2")
    result = await finished(enqueued)
    assert result.return_value == 2
    assert result.worker_ids == ["worker-1", "worker-2"]
    kinds = [data["type"] for data in await published(store, result.id)]
    assert kinds == ["task.started", "task.requeued", "task.started", "task.finished"]


async def test_only_the_user_who_enqueued_a_task_may_follow_its_stream() -> None:
    owner, other = await sync_to_async(
        lambda: (
            User.objects.create_user("owner"),
            User.objects.create_user("other"),
        )
    )()
    with enqueued_by(owner):
        mine = await jobs.add.aenqueue(1, 2)
    anonymous = await jobs.add.aenqueue(1, 2)

    assert await acan_follow(owner, stream_for(mine.id))
    assert not await acan_follow(other, stream_for(mine.id))
    assert not await acan_follow(owner, stream_for(anonymous.id))
    assert not await acan_follow(owner, "chat.lobby")


async def test_unknown_ids_and_unsupported_options_are_refused() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        await default_task_backend.aget_result("0" * 32)
    with pytest.raises(InvalidTask, match="priority"):
        jobs.add.using(priority=10)
    with pytest.raises(InvalidTask, match="Queue 'nope'"):
        jobs.add.using(queue_name="nope")


def test_progress_outside_a_running_task_says_where_it_belongs() -> None:
    with pytest.raises(RuntimeError, match="no task runs here"):
        progress({"step": 1})


def test_the_check_names_a_channel_layer_that_is_not_configured(settings: Any) -> None:
    backend = ChannelLayerTaskBackend(
        "default", {"OPTIONS": {"channel_layer": "missing", "database": "nope"}}
    )

    assert [error.id for error in backend.check()] == [
        "django_realtime.E101",
        "django_realtime.E102",
    ]


async def test_a_channel_prefix_of_nothing_sends_a_queue_to_the_channel_of_its_name(
    settings: Any,
) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": BACKEND,
            "QUEUES": ["jobs"],
            "OPTIONS": {"channel_prefix": ""},
        }
    }
    worker = Worker(TaskWorkerApplication(), ["jobs"], get_channel_layer())
    running = asyncio.create_task(worker.run())
    try:
        result = await finished(await jobs.add.using(queue_name="jobs").aenqueue(4, 4))
    finally:
        worker.stop()
        await running

    assert result.return_value == 8
