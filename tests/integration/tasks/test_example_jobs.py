"""The example's jobs as Django tasks: enqueued by the view's helper, run by
the ``jobs`` channel's consumer in a real Worker, read back with
``get_result()``; progress on both the owner's stream and the task's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip(
        "django.tasks is new in Django 6.0 (the example uses it from there)",
        allow_module_level=True,
    )

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import transaction
from django.tasks import TaskResultStatus

from django_realtime.layers import get_channel_layer
from django_realtime.routing import ChannelNameRouter
from django_realtime.streams import Position, set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.tasks import stream_for
from django_realtime.worker import Worker
from example_project.jobs import work
from example_project.jobs.dispatch import request_run, runs_as_task
from example_project.jobs.models import Job, stream_for_user
from example_project.jobs.task_worker import JobsChannelConsumer
from example_project.jobs.worker import JOBS_CHANNEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

WAIT = 10.0


@pytest.fixture(autouse=True)
def _example_tasks(settings: Any) -> None:
    """``TASKS`` as example_project/settings.py sets it on Django 6."""
    from example_project import settings as example

    settings.TASKS = example.TASKS
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}
    }


@pytest.fixture(autouse=True)
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore()
    old = set_stream_store(fresh)
    yield fresh
    set_stream_store(old)


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    """``manage.py runworker jobs``, as the example project routes it."""
    running = Worker(
        ChannelNameRouter({JOBS_CHANNEL: JobsChannelConsumer.as_asgi()}),
        [JOBS_CHANNEL],
        get_channel_layer(),
    )
    task = asyncio.create_task(running.run())
    yield running
    running.stop()
    await task


async def history(store: MemoryHistoryStore, stream: str) -> list[Any]:
    newest = (await store.read(stream)).position
    read = await store.read(stream, Position(newest.epoch, 0))
    return [json.loads(publication.data) for publication in read.publications]


async def submit(kind: str, parameters: dict[str, Any]) -> tuple[Job, str]:
    """Save a job and request its run in one transaction, as the view does."""

    def save() -> tuple[Job, str | None]:
        owner, _ = User.objects.get_or_create(username="owner")
        with transaction.atomic():
            job = Job.objects.create(owner=owner, kind=kind, parameters=parameters)
            return job, request_run(job)

    job, task_id = await sync_to_async(save)()
    assert task_id is not None
    return job, task_id


async def finished(task_id: str) -> Any:
    from example_project.jobs.tasks import run_job

    async with asyncio.timeout(WAIT):
        while True:
            result = await run_job.aget_result(task_id)
            if result.is_finished:
                return result
            await asyncio.sleep(0.01)


async def test_on_django_6_the_example_runs_jobs_as_tasks_on_runworker_jobs(
    worker: Worker, store: MemoryHistoryStore
) -> None:
    assert runs_as_task()
    job, task_id = await submit("primes", {"number": 1000})

    result = await finished(task_id)

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"below": 1000, "primes": 168}
    await job.arefresh_from_db()
    assert job.status == Job.Status.DONE
    reports = await history(store, stream_for(task_id))
    steps = [r["data"]["percent"] for r in reports if r["type"] == "task.progress"]
    assert len(steps) == work.STEPS
    assert steps[-1] == 100
    events = [
        news["type"] for news in await history(store, stream_for_user(job.owner_id))
    ]
    assert events[0] == "started"
    assert events[-1] == "done"


async def test_a_job_that_fails_fails_its_task_with_the_jobs_error(
    worker: Worker,
) -> None:
    job, task_id = await submit("primes", {"number": 1000, "fail_halfway": True})

    result = await finished(task_id)

    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is work.JobFailed
    await job.arefresh_from_db()
    assert job.status == Job.Status.FAILED
