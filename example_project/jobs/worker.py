"""The worker: run the jobs that the page's view puts on the ``jobs`` channel.

``python manage.py runworker jobs`` feeds each ``{"type": "job.run",
"job_id": ...}`` message of the channel to :class:`JobWorkerConsumer`
(routed in routing.py). For each job it:

1. claims the row, queued to running, in one conditional ``UPDATE``, so a
   job runs once even if its message arrives twice or the page has given
   up on it;
2. runs the work step by step, saving the progress of each step and
   sending it to the owner's group at once (``immediately=True``: without
   it, a handler's sends wait for the handler to return);
3. saves the result, or the error, in a transaction, and sends it to the
   owner's group once that transaction has committed.

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
from django.db import transaction
from django.utils import timezone

from django_realtime import asend_to_channel, asend_to_group, send_to_group
from django_realtime.consumers import AsyncConsumer
from example_project.jobs import work
from example_project.jobs.models import Job, group_for_user

__all__ = ["JOBS_CHANNEL", "JobWorkerConsumer", "finish", "job_event"]

logger = logging.getLogger(__name__)

#: The channel layer channel the view sends jobs to and the worker reads.
JOBS_CHANNEL = "jobs"

#: What the owner is told when a job fails for a reason that is not theirs.
UNEXPECTED_ERROR = "The job failed unexpectedly; the worker's log says why."


def job_event(job: Job) -> dict[str, Any]:
    """Return the group message that tells pages the state of ``job``."""
    return {"type": "job.update", "job": job.state()}


def finish(job: Job, *, result: dict[str, Any] | None, error: str = "") -> bool:
    """Save the end of ``job`` and tell its owner once it has committed.

    ``error`` marks the job failed; otherwise it is done with ``result``.
    Return whether the job was still running (if not, nothing is saved).
    """
    now = timezone.now()
    if error:
        changes: dict[str, Any] = {"status": Job.Status.FAILED, "error": error}
    else:
        changes = {"status": Job.Status.DONE, "progress": 100, "result": result}
    changes.update(finished_at=now, updated_at=now)
    with transaction.atomic():
        # A real job would save what it made here too (a report, a file's
        # row): the owner hears of it only once all of it is committed.
        if not Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
            **changes
        ):
            return False
        for name, value in changes.items():
            setattr(job, name, value)
        # Inside atomic(): sent once the transaction commits, not before, and
        # never if it rolls back. Inside a handler, it then waits for the
        # handler to return.
        send_to_group(group_for_user(job.owner_id), job_event(job))
    return True


class JobWorkerConsumer(AsyncConsumer):
    """Run each job sent to the ``jobs`` channel, one at a time."""

    # It only receives from runworker, and sends through send_to_group():
    # it needs no channel of its own.
    channel_layer_alias = None

    async def job_run(self, message: dict[str, Any]) -> None:
        """Run the job ``message["job_id"]`` if it is still queued."""
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
        await self._report(job)
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
            status=Job.Status.RUNNING, started_at=now, updated_at=now
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
                ).aupdate(progress=step.percent, result=step.result, updated_at=now)
                if not saved:
                    logger.warning("Job %d stopped running meanwhile; dropped", job.pk)
                    return None
                job.progress, job.result, job.updated_at = (
                    step.percent,
                    step.result,
                    now,
                )
                await self._report(job)
                result = step.result
        return result

    async def _report(self, job: Job) -> None:
        """Send the job's state to its owner's pages now."""
        await asend_to_group(
            group_for_user(job.owner_id), job_event(job), immediately=True
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
        )
        if not requeued:
            return
        await asend_to_channel(
            JOBS_CHANNEL, {"type": "job.run", "job_id": job.pk}, immediately=True
        )
        job.status, job.progress, job.result = Job.Status.QUEUED, 0, None
        job.queued_at = job.updated_at = now
        await self._report(job)
        logger.warning("Worker stopped while running job %d; queued it again", job.pk)
