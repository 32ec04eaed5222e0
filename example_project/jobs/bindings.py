"""The jobs feed: each user reads their own jobs, staff read everyone's.

The page keeps its table in sync with realtime.js's ``collection()`` on
this feed (``jobs.job``). Every change of a job is published on it: saves
and deletes (the admin's included) through the model's signals, the
worker's bulk updates through :class:`~django_realtime.feeds.FeedQuerySet`,
and :meth:`~example_project.jobs.models.JobQuerySet.change` explicitly.
Imported by :class:`~example_project.jobs.apps.JobsConfig` at startup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models

from django_realtime.feeds import Binding, register
from example_project.jobs.models import RECENT_JOBS, Job

__all__ = ["JobBinding"]


@register
class JobBinding(Binding):
    """Publish jobs with the state the page shows."""

    model = Job
    version_field = "version"
    rule_fields = ("owner_id",)
    max_snapshot = RECENT_JOBS
    #: The jobs that may still change by themselves (queued or running):
    #: ``collection(rt, "jobs.job", {query: "active"})``.
    queries = {"active": lambda jobs, params: jobs.filter(status__in=Job.ACTIVE)}

    def readable(self, user: Any) -> models.QuerySet[Job]:
        """Return the jobs ``user`` may read: their own, or all for staff."""
        if not user.is_authenticated:
            return Job.objects.none()
        if user.is_staff:
            return Job.objects.all()
        return Job.objects.filter(owner_id=user.pk)

    def can_read(self, user: Any, row: Mapping[str, Any]) -> bool:
        """Return whether ``user`` may read a job owned by ``row["owner_id"]``."""
        if not user.is_authenticated:
            return False
        return bool(user.is_staff) or row["owner_id"] == user.pk

    def serialize(self, instance: models.Model) -> dict[str, Any]:
        """Return the job's state as the page shows it, with its owner."""
        if not isinstance(instance, Job):
            raise TypeError(f"Expected a Job, got {instance!r}.")
        return {**instance.state(), "pk": instance.pk, "owner_id": instance.owner_id}
