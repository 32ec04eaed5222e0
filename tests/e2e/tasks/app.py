"""The worker's application and the task of test_tasks_runworker.py."""

from __future__ import annotations

from django.tasks import task

from django_realtime.routing import ChannelNameRouter
from django_realtime.tasks import TaskWorkerApplication, progress

application = ChannelNameRouter({"tasks.default": TaskWorkerApplication()})


@task
def multiply(a: int, b: int) -> int:
    progress({"half": a * b / 2})
    return a * b
