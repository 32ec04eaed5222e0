"""The jobs page's WebSocket consumer: news of the user's jobs, as JSON.

Only logged-in users get a socket. It joins the group of the user's pages
(``jobs.user.<id>``), where the worker sends each change of the user's
jobs, and forwards each one as the job's state::

    {"id": 7, "description": "Wait 5 seconds", "status": "running",
     "status_label": "Running", "progress": 35, "result": {...},
     "outcome": "35 % done.", "updated_at": "2026-11-23T12:00:00.000000+00:00"}

Right after it opens, it sends the state of the user's latest jobs from the
database: whatever changed between the page's rendering (or a dropped
socket) and the join is not missed. The page keeps, for each job, the state
with the latest ``updated_at``.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from django_realtime import DenyConnection
from django_realtime.consumers import AsyncJsonWebsocketConsumer
from example_project.jobs.models import group_for_user, recent_jobs

__all__ = ["JobsConsumer"]


class JobsConsumer(AsyncJsonWebsocketConsumer):
    """Forward the changes of a user's jobs to the user's page."""

    group: str | None = None

    async def connect(self) -> None:
        """Refuse anonymous users; join the user's group and send the jobs."""
        user = self.scope["user"]
        if not user.is_authenticated:
            # Refused before accept(): the handshake fails with HTTP 403.
            raise DenyConnection
        self.group = group_for_user(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # Read after joining, so that no change falls between the two.
        for job in await sync_to_async(recent_jobs)(user):
            await self.send_json(job.state())

    async def disconnect(self, code: int) -> None:
        """Leave the user's group."""
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any) -> None:
        """Say that this socket only reports; jobs are submitted with the form."""
        await self.send_json(
            {"error": "This socket only reports on jobs; submit them with the form."}
        )

    async def job_update(self, event: dict[str, Any]) -> None:
        """Send the new state of one of the user's jobs to the page."""
        await self.send_json(event["job"])
