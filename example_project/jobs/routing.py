"""Routes of jobs: the page's socket, and the worker's channel.

``websocket_urlpatterns`` go to ``URLRouter`` in the project's asgi.py;
``channel_routes`` go to ``ChannelNameRouter`` under the ``"channel"`` scope,
which ``manage.py runworker jobs`` serves.
"""

from typing import Any

import django
from django.urls import path

from django_realtime.middleware.limits import ConnectionLimits
from example_project.jobs.consumers import JobsConsumer
from example_project.jobs.worker import JOBS_CHANNEL, JobWorkerConsumer

__all__ = ["channel_routes", "websocket_urlpatterns"]

websocket_urlpatterns = [
    # Django's stubs type path() for views; URLRouter takes ASGI applications.
    # Requests from a page: 10 a second, bursts of 30, or closed with 4029.
    path(
        "ws/jobs/",
        ConnectionLimits(JobsConsumer.as_asgi(), rate=10, burst=30),  # type: ignore[arg-type]
    ),
]

#: Channel layer channels of ``manage.py runworker``, for ``ChannelNameRouter``.
channel_routes: dict[str, Any] = {
    JOBS_CHANNEL: JobWorkerConsumer.as_asgi(),
}

if django.VERSION >= (6, 0):
    # The channel also takes the jobs enqueued as Django tasks (tasks.py).
    from example_project.jobs.task_worker import JobsChannelConsumer

    channel_routes[JOBS_CHANNEL] = JobsChannelConsumer.as_asgi()
