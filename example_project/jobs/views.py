"""The jobs page: submit a job, watch your jobs. It needs a login."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from django_realtime import get_channel_layer, send_to_channel
from django_realtime.exceptions import ChannelFull
from django_realtime.layers import InMemoryChannelLayer
from example_project.jobs.forms import JobForm
from example_project.jobs.models import Job, recent_jobs
from example_project.jobs.worker import JOBS_CHANNEL

if TYPE_CHECKING:
    from django.contrib.auth.models import User

__all__ = ["FULL_QUEUE_ERROR", "AuthenticatedHttpRequest", "index", "submit_job"]

logger = logging.getLogger(__name__)


class AuthenticatedHttpRequest(HttpRequest):
    """A request of a logged-in user, for views under ``login_required``."""

    user: User


#: What the owner of a job is told when the worker's channel is full.
FULL_QUEUE_ERROR = "Too many jobs are waiting for a worker; try again later."


def submit_job(owner: User, kind: str, parameters: dict[str, object]) -> Job:
    """Save a job, and ask a worker to run it once the row has committed."""
    try:
        with transaction.atomic():
            job = Job.objects.create(owner=owner, kind=kind, parameters=parameters)
            # Inside atomic(), send_to_channel() waits for the commit: the
            # worker never looks for a row that is not there yet, and hears
            # nothing of a job whose transaction rolled back.
            send_to_channel(JOBS_CHANNEL, {"type": "job.run", "job_id": job.pk})
    except ChannelFull:
        # The row has committed, but the channel refused the message: no
        # worker will ever run this job, so say so.
        logger.warning("The %r channel is full; job %d failed", JOBS_CHANNEL, job.pk)
        now = timezone.now()
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.FAILED,
            error=FULL_QUEUE_ERROR,
            finished_at=now,
            updated_at=now,
        )
    return job


@login_required
@require_http_methods(["GET", "POST"])
def index(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Show the user's latest jobs; submit a job from the form."""
    form = JobForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        submit_job(request.user, form.cleaned_data["kind"], form.parameters())
        # Post/redirect/get: a reload does not submit the job again.
        return redirect("jobs:index")
    context = {
        "form": form,
        "jobs": recent_jobs(request.user),
        # A worker process cannot receive from this process's memory.
        "in_memory_layer": isinstance(get_channel_layer(), InMemoryChannelLayer),
    }
    return render(
        request, "jobs/index.html", context, status=400 if form.errors else 200
    )
