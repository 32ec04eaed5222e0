"""The jobs app's one model: a job a user asked for, and how far it has got.

The row is the truth about a job; the channel layer only carries the
request to run it (to the worker), and the owner's stream
(``jobs.user.<id>``) carries news of it to the owner's pages. A channel
layer is not a durable queue: a message expires if no worker takes it in
time, a worker that stops drops the messages it had taken but not reached,
and a worker that is killed takes the job it was running with it.
:meth:`JobQuerySet.fail_abandoned` turns such jobs into failed ones that say
why, instead of leaving them queued or running forever.

Every change of a row adds one to its ``version`` and is published on the
owner's stream with the job's whole state, version included. A page keeps,
for each job, the state with the highest version: news that arrives twice,
or late, changes nothing.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models, router, transaction
from django.db.models import F, Q
from django.utils import timezone

from django_realtime import get_channel_layer
from django_realtime.feeds import FeedQuerySet
from django_realtime.feeds.events import UPDATE
from django_realtime.feeds.publishing import publish_instance
from django_realtime.streams import publish
from example_project.jobs import work

if TYPE_CHECKING:
    from django.contrib.auth.models import User

__all__ = [
    "EVENTS",
    "RECENT_JOBS",
    "SILENCE_LIMIT",
    "Job",
    "JobQuerySet",
    "cancel_job",
    "job_news",
    "recent_jobs",
    "stream_for_user",
]

#: How many of a user's latest jobs the page shows.
RECENT_JOBS = 20

#: Seconds a running job may go without a progress report before it is taken
#: as abandoned; a step of the slowest job takes a fraction of this.
SILENCE_LIMIT = 60.0

#: The ``type`` of each piece of news on a user's stream: what happened.
EVENTS = frozenset(
    {"created", "started", "progress", "done", "failed", "cancelled", "requeued"}
)


def stream_for_user(user_id: int) -> str:
    """Return the stream of the news of user ``user_id``'s jobs."""
    return f"jobs.user.{user_id}"


def job_news(event: str, job: Job) -> dict[str, Any]:
    """Return the publication that tells pages ``event`` happened to ``job``."""
    if event not in EVENTS:
        raise ValueError(f"Expected an event among {sorted(EVENTS)}, got {event!r}.")
    return {"type": event, "job": job.state()}


class JobQuerySet(FeedQuerySet["Job"]):
    """Queries on jobs; their bulk updates publish to the jobs feeds."""

    def change(self, pk: int, event: str, **changes: Any) -> Job | None:
        """Apply ``changes`` to job ``pk`` if it is in this queryset; publish it.

        The row gets one version more, and ``event`` goes to its owner's
        stream with the state as saved, once the transaction commits (the
        caller's, or the one opened here). Return the job as saved, or
        ``None`` if it is not in this queryset (any more): the conditions of
        the queryset are checked by the ``UPDATE`` itself, so two changes
        racing for one row never both apply.
        """
        using = router.db_for_write(Job)
        with transaction.atomic(using=using):
            # Write first, then read: a SQLite transaction that reads first
            # may be refused the write lock.
            # The plain UPDATE (FeedQuerySet.update() would read first), then
            # the feeds are told explicitly.
            updated = models.QuerySet.update(
                self.using(using).filter(pk=pk), **changes, version=F("version") + 1
            )
            if not updated:
                return None
            # Until the commit, the UPDATE holds the row (PostgreSQL) or the
            # database (SQLite): this reads what it wrote.
            job = Job.objects.using(using).get(pk=pk)
            publish(stream_for_user(job.owner_id), job_news(event, job), using=using)
            publish_instance(job, UPDATE, changed=[*changes, "version"], using=using)
        return job

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
        saves a step, so a job marked failed here never runs again. The
        owner's pages are told of each one.
        """
        expired = Q(
            status=Job.Status.QUEUED,
            queued_at__lt=now - datetime.timedelta(seconds=queued_for),
        )
        silent = Q(
            status=Job.Status.RUNNING,
            updated_at__lt=now - datetime.timedelta(seconds=silent_for),
        )
        reasons: dict[str, tuple[Q, str]] = {
            Job.Status.QUEUED: (
                expired,
                f"No worker started this job within {queued_for:g} s: its message "
                "expired, or a worker stopped before reaching it. Is "
                "`manage.py runworker jobs` running?",
            ),
            Job.Status.RUNNING: (
                silent,
                f"The worker running this job went silent for over {silent_for:g} s "
                "and is taken as gone.",
            ),
        }
        failed = 0
        for pk, status in self.filter(expired | silent).values_list("pk", "status"):
            condition, error = reasons[status]
            # The condition again, in the UPDATE: a job its worker has just
            # moved on is left alone.
            failed += (
                self.filter(condition).change(
                    pk,
                    "failed",
                    status=Job.Status.FAILED,
                    error=error,
                    finished_at=now,
                    updated_at=now,
                )
                is not None
            )
        return failed


class Job(models.Model):
    """A job a user submitted, run by a worker, watched from the user's page."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    #: The statuses of a job that may still change by itself.
    ACTIVE = (Status.QUEUED, Status.RUNNING)

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
    #: When the row last changed: a running job that stays silent is abandoned.
    updated_at = models.DateTimeField(default=timezone.now)
    #: How many times the row was saved: every change adds one, in its
    #: UPDATE. Pages keep the state with the highest version.
    version = models.PositiveIntegerField(default=1)

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
    def is_active(self) -> bool:
        """Return whether the job is queued or running."""
        return self.status in Job.ACTIVE

    @property
    def outcome(self) -> str:
        """Return the job's result or error, in words, or where it stands."""
        if self.status == Job.Status.FAILED:
            return self.error
        if self.status == Job.Status.CANCELLED:
            return "Cancelled."
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
            "version": self.version,
            "description": self.description,
            "status": self.status,
            "status_label": Job.Status(self.status).label,
            "progress": self.progress,
            "result": self.result,
            "outcome": self.outcome,
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


def cancel_job(owner: User, job_id: int) -> tuple[Job, bool]:
    """Cancel ``owner``'s job ``job_id`` if it is queued or running.

    Return the job as saved, and whether this call cancelled it. A worker
    checks the status before it starts a job and before it saves a step, so
    a cancelled job stops at its next step.

    Raises:
        Job.DoesNotExist: ``owner`` has no job ``job_id``.
    """
    now = timezone.now()
    mine = Job.objects.filter(owner=owner)
    cancelled = mine.filter(status__in=Job.ACTIVE).change(
        job_id,
        "cancelled",
        status=Job.Status.CANCELLED,
        finished_at=now,
        updated_at=now,
    )
    if cancelled is not None:
        return cancelled, True
    return mine.get(pk=job_id), False
