"""Ask a worker to run a job: as a Django task on Django 6, else a message.

With ``TASKS["default"]`` set to
:class:`django_realtime.tasks.ChannelLayerTaskBackend` (the example's
settings do so on Django 6), :func:`request_run` enqueues
:func:`example_project.jobs.tasks.run_job`; otherwise (Django 5.2, or the
test suite's settings) it sends ``{"type": "job.run", "job_id": ...}`` to
the ``jobs`` channel. Either way ``manage.py runworker jobs`` runs it, and
inside ``transaction.atomic()`` nothing goes out before the commit.
"""

from __future__ import annotations

import django
from django.conf import settings

from django_realtime import send_to_channel
from example_project.jobs.models import Job
from example_project.jobs.worker import JOBS_CHANNEL

__all__ = ["request_run", "runs_as_task"]

_BACKEND = "django_realtime.tasks.ChannelLayerTaskBackend"


def runs_as_task() -> bool:
    """Return whether jobs are enqueued as Django tasks here."""
    tasks = getattr(settings, "TASKS", None) or {}
    return (
        django.VERSION >= (6, 0) and tasks.get("default", {}).get("BACKEND") == _BACKEND
    )


def request_run(job: Job) -> str | None:
    """Ask a worker to run ``job`` (at the commit, inside a transaction).

    Return the task's id when the job is enqueued as a task (its progress is
    on the stream ``task.<id>`` too), else ``None``.

    Raises:
        django_realtime.exceptions.ChannelFull: The ``jobs`` channel is full
            (from the commit, inside a transaction).
    """
    if runs_as_task():
        from example_project.jobs.tasks import run_job

        return run_job.enqueue(job.pk).id
    send_to_channel(JOBS_CHANNEL, {"type": "job.run", "job_id": job.pk})
    return None
