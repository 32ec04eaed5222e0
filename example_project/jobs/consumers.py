"""The jobs page's socket: the jobs feed, and the user's stream of news.

A :class:`~django_realtime.feeds.FeedConsumer` on ``/ws/jobs/``. Only a
logged-in user may use it. The page follows the ``jobs.job`` feed
(:mod:`example_project.jobs.bindings`): the user's own jobs, or everyone's
for staff, as a snapshot then each change. The consumer also serves the
user's own stream, ``jobs.user.<id>``, where every change of one of their
jobs is published with the job's state and what happened::

    {"type": "progress",
     "job": {"id": 7, "version": 9, "description": "Wait 5 seconds",
             "status": "running", "status_label": "Running", "progress": 35,
             "result": {...}, "outcome": "35 % done.", "updated_at": "..."}}

``type`` says what happened: ``created``, ``started``, ``progress``,
``done``, ``failed``, ``cancelled`` or ``requeued``. A page that drops its
connection resumes the stream where it left it, and gets what it missed.

The page asks for one thing over the socket: ``cancel`` (``{"id": 7}``)
cancels one of the user's jobs that is still queued or running.
"""

from __future__ import annotations

from typing import Any

from django_realtime.feeds import FeedConsumer
from django_realtime.streams import RequestError
from example_project.jobs.models import Job, cancel_job, stream_for_user

__all__ = ["JobsConsumer"]


class JobsConsumer(FeedConsumer):
    """Serve a user the jobs feed and the news of their jobs; cancel on request."""

    feeds = ("jobs.job",)

    async def connect(self) -> None:
        """Accept the socket; close it with 4003 for a user not logged in."""
        await self.accept()
        if not self.scope["user"].is_authenticated:
            # Accepted then closed, rather than refused: a refused handshake
            # looks like a network failure to the page, which would retry
            # for ever; 4003 tells realtime.js not to come back.
            await self.close(4003)

    async def authorize_stream(self, stream: str) -> bool:
        """Allow the jobs feed, and the user's own stream."""
        user = self.scope["user"]
        if not user.is_authenticated:
            return False
        return stream == stream_for_user(user.pk) or await super().authorize_stream(
            stream
        )

    def request_cancel(self, data: Any) -> dict[str, Any]:
        """Cancel the user's job ``data["id"]``; return its state.

        The page hears of the cancel on the stream too, like of any change.
        Runs on the sync pool, where the ORM works as in a view.

        Raises:
            RequestError: ``bad_request``, ``not_found`` (not a job of this
                user), or ``finished`` (done, failed or cancelled already).
        """
        job_id = data.get("id") if isinstance(data, dict) else None
        if type(job_id) is not int:
            raise RequestError(
                "bad_request", f"Expected {{'id': <a job's id>}}, got {data!r}."
            )
        try:
            job, cancelled = cancel_job(self.scope["user"], job_id)
        except Job.DoesNotExist:
            raise RequestError("not_found", f"You have no job {job_id}.") from None
        if not cancelled:
            raise RequestError(
                "finished",
                f"Job {job_id} is {job.get_status_display().lower()}: only queued "
                "and running jobs can be cancelled.",
            )
        return job.state()
