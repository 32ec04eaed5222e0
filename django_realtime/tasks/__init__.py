"""Django's task framework (``django.tasks``) run by ``runworker`` processes.

:class:`ChannelLayerTaskBackend` is a ``TASKS`` backend: ``enqueue()``
stores a :class:`~django_realtime.models.TaskRecord` and sends its id to the
channel ``tasks.<queue>`` of a channel layer; ``manage.py runworker
tasks.<queue>`` runs it through :class:`TaskWorkerApplication`; any process
reads the outcome with ``get_result()``. Inside a running task,
:func:`progress` / :func:`aprogress` publish to the stream
``task.<id>`` (:func:`stream_for`), which also receives the task's start and
outcome. See ``docs/topics/tasks.rst``.

Needs Django 6.0 or later (``django.tasks``); importing this package on an
older Django raises :exc:`ImportError`.
"""

from __future__ import annotations

import django

if django.VERSION < (6, 0):  # pragma: no cover (the Django 5.2 tier)
    raise ImportError(
        "django_realtime.tasks needs Django 6.0 or later (it implements a "
        f"backend of django.tasks, new in Django 6.0); this is Django "
        f"{django.get_version()}. Upgrade Django, or keep a channel worker "
        "(docs/topics/background-jobs.rst)."
    )

from django_realtime.tasks.access import acan_follow, can_follow, enqueued_by
from django_realtime.tasks.backend import ChannelLayerTaskBackend
from django_realtime.tasks.messages import channel_for, stream_for
from django_realtime.tasks.progress import aprogress, current_task_id, progress
from django_realtime.tasks.runner import TaskWorkerApplication

__all__ = [
    "ChannelLayerTaskBackend",
    "TaskWorkerApplication",
    "acan_follow",
    "aprogress",
    "can_follow",
    "channel_for",
    "current_task_id",
    "enqueued_by",
    "progress",
    "stream_for",
]
