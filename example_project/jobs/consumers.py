"""The jobs page's socket: the user's stream of news of their jobs.

A :class:`~django_realtime.streams.StreamConsumer` on ``/ws/jobs/``. Only a
logged-in user may use it, and only to read their own stream,
``jobs.user.<id>``, where every change of one of their jobs is published
with the job's state::

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

from django_realtime.streams import RequestError, StreamConsumer
from example_project.jobs.models import Job, cancel_job, stream_for_user

__all__ = ["JobsConsumer"]


class JobsConsumer(StreamConsumer):
    """Serve a user the news of their jobs; cancel their jobs on request."""

    async def connect(self) -> None:
        """Accept the socket; close it with 4003 for a user not logged in."""
        await self.accept()
        if not self.scope["user"].is_authenticated:
            # Accepted then closed, rather than refused: a refused handshake
            # looks like a network failure to the page, which would retry
            # for ever; 4003 tells realtime.js not to come back.
            await self.close(4003)

    async def authorize_stream(self, stream: str) -> bool:
        """Allow the user's own stream only."""
        user = self.scope["user"]
        return bool(user.is_authenticated) and stream == stream_for_user(user.pk)

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
