"""The jobs page's work as a Django task (Django 6 and later).

:func:`run_job` runs a job exactly as
:class:`~example_project.jobs.worker.JobWorkerConsumer` does (claim the row,
run :mod:`example_project.jobs.work` step by step, tell the owner's pages on
their stream, save the end), and also reports each step on the task's own
stream, ``task.<id>``, with
:func:`django_realtime.tasks.aprogress`. Its outcome is the task's:
``get_result(id).return_value`` is the job's result, and a job that fails
fails the task.

The example's ``TASKS`` (example_project/settings.py) sends the ``jobs``
queue to the ``jobs`` channel, so ``manage.py runworker jobs`` runs these
tasks too (example_project/jobs/task_worker.py). The view enqueues through
:func:`example_project.jobs.dispatch.request_run`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import F
from django.tasks import task
from django.utils import timezone

from django_realtime.tasks import aprogress
from example_project.jobs import work
from example_project.jobs.models import Job
from example_project.jobs.worker import JOBS_CHANNEL, JobWorkerConsumer

__all__ = ["run_job"]

logger = logging.getLogger(__name__)


class _TaskJobRunner(JobWorkerConsumer):
    """The channel worker's job logic, inside a task.

    Each step goes to the task's stream as well as the owner's. A job
    interrupted by a stopping worker goes back to "queued" here; the task
    backend sends the task back to its queue, which runs the job again.
    """

    async def _report(self, event: str, job: Job) -> None:
        await super()._report(event, job)
        if event == "progress":
            await aprogress({"percent": job.progress, "result": job.result})

    async def _requeue(self, job: Job) -> None:
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
        if requeued:
            job.status, job.progress, job.result = Job.Status.QUEUED, 0, None
            job.queued_at = job.updated_at = now
            job.version += 1
            await super()._report("requeued", job)
            logger.warning(
                "Worker stopped while running job %d; queued it again", job.pk
            )


@task(queue_name=JOBS_CHANNEL)
async def run_job(job_id: int) -> dict[str, Any] | None:
    """Run the job ``job_id`` if it is queued; return its result.

    Returns ``None`` if the job was not queued (run already, cancelled) or
    stopped running meanwhile.

    Raises:
        work.JobFailed: The job failed; its message is the job's error.
    """
    await _TaskJobRunner().job_run({"type": "job.run", "job_id": job_id})
    job = await Job.objects.aget(pk=job_id)
    if job.status == Job.Status.FAILED:
        raise work.JobFailed(job.error)
    if job.status == Job.Status.DONE:
        result: dict[str, Any] | None = job.result
        return result
    return None
