"""The jobs page: submit a job, watch your jobs. It needs a login."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from django_realtime import get_channel_layer
from django_realtime.exceptions import ChannelFull
from django_realtime.layers import InMemoryChannelLayer
from django_realtime.streams import get_stream_store, publish
from django_realtime.streams.stores import MemoryHistoryStore
from example_project.jobs.dispatch import request_run
from example_project.jobs.forms import JobForm
from example_project.jobs.models import Job, job_news, recent_jobs, stream_for_user
from example_project.jobs.worker import JOBS_CHANNEL

if TYPE_CHECKING:
    from django.contrib.auth.models import User

__all__ = [
    "FULL_QUEUE_ERROR",
    "AuthenticatedHttpRequest",
    "index",
    "jobs_state",
    "submit_job",
]

logger = logging.getLogger(__name__)


class AuthenticatedHttpRequest(HttpRequest):
    """A request of a logged-in user, for views under ``login_required``."""

    user: User


#: What the owner of a job is told when the worker's channel is full.
FULL_QUEUE_ERROR = "Too many jobs are waiting for a worker; try again later."


def submit_job(owner: User, kind: str, parameters: dict[str, object]) -> Job:
    """Save a job, tell its owner's pages, and ask a worker to run it.

    The news and the request to the worker go out once the row has
    committed.
    """
    try:
        with transaction.atomic():
            job = Job.objects.create(owner=owner, kind=kind, parameters=parameters)
            # Inside atomic(), publish() and request_run() wait for the
            # commit: no page hears of a job, and no worker looks for it,
            # before the row is there, and nothing goes out if the
            # transaction rolls back.
            publish(stream_for_user(owner.pk), job_news("created", job))
            # A job.run message, or the Django task tasks.run_job on Django 6.
            request_run(job)
    except ChannelFull:
        # The row has committed, but the channel refused the message: no
        # worker will ever run this job, so say so.
        logger.warning("The %r channel is full; job %d failed", JOBS_CHANNEL, job.pk)
        now = timezone.now()
        Job.objects.filter(status=Job.Status.QUEUED).change(
            job.pk,
            "failed",
            status=Job.Status.FAILED,
            error=FULL_QUEUE_ERROR,
            finished_at=now,
            updated_at=now,
        )
    return job


def stream_position(stream: str) -> dict[str, Any]:
    """Return the newest position of ``stream``, for a page to subscribe from."""
    history = async_to_sync(get_stream_store().read)(stream)
    return {"epoch": history.epoch, "offset": history.offset}


@login_required
@require_http_methods(["GET", "POST"])
def index(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Show the user's latest jobs; submit a job from the form."""
    form = JobForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        submit_job(request.user, form.cleaned_data["kind"], form.parameters())
        # Post/redirect/get: a reload does not submit the job again.
        return redirect("jobs:index")
    stream = stream_for_user(request.user.pk)
    # The stream's position first, then the rows. A change committed in
    # between is in both: the page keeps the higher version of each job.
    # The page subscribes from this position, so no change committed after
    # it is missed.
    since = stream_position(stream)
    jobs = recent_jobs(request.user)
    context = {
        "form": form,
        "jobs": jobs,
        "jobs_stream": {
            "name": stream,
            "since": since,
            "stateUrl": reverse("jobs:state"),
        },
        # A worker process can neither receive from this process's memory
        # nor publish to it.
        "in_memory": isinstance(get_channel_layer(), InMemoryChannelLayer)
        or isinstance(get_stream_store(), MemoryHistoryStore),
    }
    return render(
        request, "jobs/index.html", context, status=400 if form.errors else 200
    )


@require_GET
def jobs_state(request: HttpRequest) -> JsonResponse:
    """Return the user's latest jobs as JSON, for a page that lost news of them."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "Log in to see your jobs."}, status=403)
    # login_required is not used here: a page's script is better told 403
    # than redirected to a login form it cannot read.
    jobs = recent_jobs(request.user)
    return JsonResponse({"jobs": [job.state() for job in jobs]})
