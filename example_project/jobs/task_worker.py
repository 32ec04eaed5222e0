"""The ``jobs`` channel's consumer on Django 6: jobs and Django tasks.

``manage.py runworker jobs`` gets ``job.run`` messages (a job sent as a
channel message, as on Django 5.2) and ``task.run`` messages (a job
enqueued as the Django task :func:`example_project.jobs.tasks.run_job`; the
example's ``TASKS`` sends the ``jobs`` queue to the ``jobs`` channel). This
consumer handles both: the first as
:class:`~example_project.jobs.worker.JobWorkerConsumer` does, the second
through :class:`django_realtime.tasks.TaskWorkerApplication`.
"""

from __future__ import annotations

from typing import Any

from django_realtime.tasks import TaskWorkerApplication
from example_project.jobs.worker import JOBS_CHANNEL, JobWorkerConsumer

__all__ = ["JobsChannelConsumer"]


class JobsChannelConsumer(JobWorkerConsumer):
    """Run ``job.run`` messages as jobs and ``task.run`` messages as tasks."""

    tasks = TaskWorkerApplication()

    async def task_run(self, message: dict[str, Any]) -> None:
        """Run the Django task ``message`` names (claimed once, as any task)."""
        await self.tasks.handle(JOBS_CHANNEL, message)
