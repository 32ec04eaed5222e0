"""The jobs app's one model: a job a user asked for, and how far it has got.

The row is the truth about a job; the channel layer only carries the
request to run it (to the worker) and news of it (to the owner's pages).
A channel layer is not a durable queue: a message expires if no worker
takes it in time, a worker that stops drops the messages it had taken but
not reached, and a worker that is killed takes the job it was running with
it. :meth:`JobQuerySet.fail_abandoned` turns such jobs into failed ones
that say why, instead of leaving them queued or running forever.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from django_realtime import get_channel_layer
from example_project.jobs import work

if TYPE_CHECKING:
    from django.contrib.auth.models import User

__all__ = [
    "RECENT_JOBS",
    "SILENCE_LIMIT",
    "Job",
    "JobQuerySet",
    "group_for_user",
    "recent_jobs",
]

#: How many of a user's latest jobs the page shows.
RECENT_JOBS = 20

#: Seconds a running job may go without a progress report before it is taken
#: as abandoned; a step of the slowest job takes a fraction of this.
SILENCE_LIMIT = 60.0


def group_for_user(user_id: int) -> str:
    """Return the group of the pages of user ``user_id``."""
    return f"jobs.user.{user_id}"


class JobQuerySet(models.QuerySet["Job"]):
    """Queries on jobs."""

    def fail_abandoned(
        self,
        *,
        now: datetime.datetime,
        queued_for: float,
        silent_for: float = SILENCE_LIMIT,
    ) -> int:
        """Mark jobs no worker will ever finish as failed; return how many.

        Args:
            now: The current time.
            queued_for: Seconds after which a queued job's message has
                expired: the channel layer's ``expiry``.
            silent_for: Seconds without progress after which a running
                job's worker is taken as gone.

        A worker checks the status before it starts a job and before it
        saves a step, so a job marked failed here never runs again.
        """
        expired = self.filter(
            status=Job.Status.QUEUED,
            queued_at__lt=now - datetime.timedelta(seconds=queued_for),
        ).update(
            status=Job.Status.FAILED,
            error=(
                f"No worker started this job within {queued_for:g} s: its message "
                "expired, or a worker stopped before reaching it. Is "
                "`manage.py runworker jobs` running?"
            ),
            finished_at=now,
            updated_at=now,
        )
        silent = self.filter(
            status=Job.Status.RUNNING,
            updated_at__lt=now - datetime.timedelta(seconds=silent_for),
        ).update(
            status=Job.Status.FAILED,
            error=(
                f"The worker running this job went silent for over {silent_for:g} s "
                "and is taken as gone."
            ),
            finished_at=now,
            updated_at=now,
        )
        return expired + silent


class Job(models.Model):
    """A job a user submitted, run by a worker, watched from the user's page."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=20, choices=list(work.KINDS.items()))
    parameters = models.JSONField(default=dict)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    progress = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    #: When the job's message was last sent to the worker's channel.
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: When the row last changed: pages keep the newest state they are sent.
    updated_at = models.DateTimeField(default=timezone.now)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="jobs_progress_lte_100"
            )
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} of {self.owner_id}: {self.description} ({self.status})"

    @property
    def description(self) -> str:
        """Return what the job does, in words."""
        return work.describe(self.kind, self.parameters)

    @property
    def outcome(self) -> str:
        """Return the job's result or error, in words, or where it stands."""
        if self.status == Job.Status.FAILED:
            return self.error
        if self.status == Job.Status.QUEUED:
            return "Waiting for a worker."
        result = self.result or {}
        if "primes" in result:
            found = f"{result['primes']:,} primes"
            return f"{found}." if self.status == Job.Status.DONE else f"{found} so far."
        if self.status == Job.Status.DONE:
            return "Done."
        return f"{self.progress} % done."

    def state(self) -> dict[str, Any]:
        """Return what a page shows of the job, as JSON-ready values."""
        return {
            "id": self.pk,
            "description": self.description,
            "status": self.status,
            "status_label": Job.Status(self.status).label,
            "progress": self.progress,
            "result": self.result,
            "outcome": self.outcome,
            # One format (UTC, microseconds) for all, so that pages can
            # compare them as strings.
            "updated_at": self.updated_at.astimezone(datetime.UTC).isoformat(
                timespec="microseconds"
            ),
        }


def recent_jobs(owner: User) -> list[Job]:
    """Return the latest jobs of ``owner``, newest first, as the page shows them.

    Jobs no worker will finish are marked failed first (see
    :meth:`JobQuerySet.fail_abandoned`); a queued job is taken as lost once it
    has waited longer than the channel layer keeps messages.
    """
    # Both the in-memory layer and channels-redis keep a message this long.
    expiry = float(getattr(get_channel_layer(), "expiry", 60))
    mine = Job.objects.filter(owner=owner)
    mine.fail_abandoned(now=timezone.now(), queued_for=expiry)
    return list(mine[:RECENT_JOBS])
