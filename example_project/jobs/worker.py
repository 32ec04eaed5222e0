"""The worker: run the jobs that the page's view puts on the ``jobs`` channel.

``python manage.py runworker jobs`` feeds each ``{"type": "job.run",
"job_id": ...}`` message of the channel to :class:`JobWorkerConsumer`
(routed in routing.py). For each job it:

1. claims the row, queued to running, in one conditional ``UPDATE``, so a
   job runs once even if its message arrives twice or the page has given
   up on it;
2. runs the work step by step, saving the progress of each step and
   publishing it on the owner's stream at once (``immediately=True``:
   without it, a handler's publications wait for the handler to return);
   the jobs feed publishes each change at once too
   (:func:`~django_realtime.feeds.publish_immediately`);
3. saves the result, or the error, in a transaction, and publishes it on
   the owner's stream once that transaction has committed.

Each change of the row adds one to its ``version``. While a job is running
only its worker changes the row: anyone else (a cancel, a page that takes
the job as abandoned) first takes it out of "running", after which the
worker's conditional updates match nothing. So the worker counts the
versions it writes instead of reading them back.

A worker stopped by SIGTERM or SIGINT (a deploy) puts the job it was
running back on the channel, as queued, for the next worker.

One worker process runs one job at a time; run more processes for more at
once. (``runworker`` takes further messages off the channel while a job
runs, and those wait for that job: see docs/topics/background-jobs.rst.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.db import router, transaction
from django.db.models import F
from django.utils import timezone

from django_realtime import asend_to_channel
from django_realtime.consumers import AsyncConsumer
from django_realtime.feeds import publish_immediately
from django_realtime.streams import apublish
from example_project.jobs import work
from example_project.jobs.models import Job, job_news, stream_for_user

__all__ = ["JOBS_CHANNEL", "UNEXPECTED_ERROR", "JobWorkerConsumer", "finish"]

logger = logging.getLogger(__name__)

#: The channel layer channel the view sends jobs to and the worker reads.
JOBS_CHANNEL = "jobs"

#: What the owner is told when a job fails for a reason that is not theirs.
UNEXPECTED_ERROR = "The job failed unexpectedly; the worker's log says why."


def finish(job: Job, *, result: dict[str, Any] | None, error: str = "") -> bool:
    """Save the end of ``job`` and tell its owner once it has committed.

    ``error`` marks the job failed; otherwise it is done with ``result``.
    Return whether the job was still running (if not, nothing is saved).
    """
    now = timezone.now()
    if error:
        event = "failed"
        changes: dict[str, Any] = {"status": Job.Status.FAILED, "error": error}
    else:
        event = "done"
        changes = {"status": Job.Status.DONE, "progress": 100, "result": result}
    with transaction.atomic(using=router.db_for_write(Job)):
        # A real job would save what it made here too (a report, a file's
        # row): the owner hears of it only once all of it is committed.
        # change() publishes inside atomic(): once the transaction commits,
        # not before, and never if it rolls back. Inside a handler, the
        # publication then waits for the handler to return.
        saved = Job.objects.filter(status=Job.Status.RUNNING).change(
            job.pk, event, **changes, finished_at=now, updated_at=now
        )
    return saved is not None


class JobWorkerConsumer(AsyncConsumer):
    """Run each job sent to the ``jobs`` channel, one at a time."""

    # It only receives from runworker, and publishes to streams: it needs no
    # channel of its own.
    channel_layer_alias = None

    async def job_run(self, message: dict[str, Any]) -> None:
        """Run the job ``message["job_id"]`` if it is still queued.

        Each change of the row reaches the jobs feed at once (its commit),
        not when the handler returns: the pages show the progress live.
        """
        with publish_immediately():
            await self._job_run(message)

    async def _job_run(self, message: dict[str, Any]) -> None:
        job_id = message.get("job_id")
        if type(job_id) is not int:
            logger.error("Expected an integer 'job_id', got %r; skipped", job_id)
            return
        job = await self._claim(job_id)
        if job is None:
            # Done, failed, running elsewhere, or deleted: nothing to do.
            logger.info("Job %d is not queued; skipped", job_id)
            return
        logger.info("Running job %d: %s", job.pk, job.description)
        await self._report("started", job)
        try:
            result = await self._run(job)
        except asyncio.CancelledError:
            await self._requeue(job)
            raise
        except work.JobFailed as exc:
            logger.info("Job %d failed: %s", job.pk, exc)
            await sync_to_async(finish)(job, result=None, error=str(exc))
        except Exception:
            logger.exception("Job %d failed unexpectedly", job.pk)
            await sync_to_async(finish)(job, result=None, error=UNEXPECTED_ERROR)
        else:
            if result is not None:
                await sync_to_async(finish)(job, result=result)
                logger.info("Job %d done", job.pk)

    async def _claim(self, job_id: int) -> Job | None:
        """Mark the job running if it is queued; return it, or ``None``."""
        now = timezone.now()
        claimed = await Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).aupdate(
            status=Job.Status.RUNNING,
            started_at=now,
            updated_at=now,
            version=F("version") + 1,
        )
        if not claimed:
            return None
        return await Job.objects.aget(pk=job_id)

    async def _run(self, job: Job) -> dict[str, Any] | None:
        """Run the work, saving and reporting each step; return the result.

        Return ``None`` if the job stopped running meanwhile (the page took
        it as abandoned): its row is no longer this worker's to change.
        """
        result: dict[str, Any] = {}
        async with contextlib.aclosing(work.run(job.kind, job.parameters)) as steps:
            async for step in steps:
                now = timezone.now()
                saved = await Job.objects.filter(
                    pk=job.pk, status=Job.Status.RUNNING
                ).aupdate(
                    progress=step.percent,
                    result=step.result,
                    updated_at=now,
                    version=F("version") + 1,
                )
                if not saved:
                    logger.warning("Job %d stopped running meanwhile; dropped", job.pk)
                    return None
                job.progress, job.result, job.updated_at = (
                    step.percent,
                    step.result,
                    now,
                )
                job.version += 1
                await self._report("progress", job)
                result = step.result
        return result

    async def _report(self, event: str, job: Job) -> None:
        """Publish ``event`` with the job's state to its owner's stream now.

        The row's change is committed already (the async ORM autocommits):
        there is nothing to wait for.
        """
        await apublish(
            stream_for_user(job.owner_id), job_news(event, job), immediately=True
        )

    async def _requeue(self, job: Job) -> None:
        """Put a job this worker was stopped in the middle of back in the queue."""
        now = timezone.now()
        requeued = await Job.objects.filter(
            pk=job.pk, status=Job.Status.RUNNING
        ).aupdate(
            status=Job.Status.QUEUED,
            progress=0,
            result=None,
            started_at=None,
            queued_at=now,
            updated_at=now,
            version=F("version") + 1,
        )
        if not requeued:
            return
        await asend_to_channel(
            JOBS_CHANNEL, {"type": "job.run", "job_id": job.pk}, immediately=True
        )
        job.status, job.progress, job.result = Job.Status.QUEUED, 0, None
        job.queued_at = job.updated_at = now
        job.version += 1
        await self._report("requeued", job)
        logger.warning("Worker stopped while running job %d; queued it again", job.pk)
