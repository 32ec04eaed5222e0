"""Report a running task's progress on its stream, ``task.<id>``.

The worker sets the running task's id for the duration of the call (a
context variable, so it reaches a sync task's thread and the coroutines an
async task awaits); :func:`progress` and :func:`aprogress` publish to that
task's stream at once, outside any transaction or handler, so a page that
subscribes late, or reloads mid-task, reads every report from the stream's
history.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from django_realtime.streams.publishing import apublish, publish
from django_realtime.tasks.messages import stream_for

__all__ = ["aprogress", "current_task_id", "progress", "running"]

_running: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "django_realtime_running_task", default=None
)


@contextlib.contextmanager
def running(task_id: str) -> Iterator[None]:
    """Mark ``task_id`` as the task running in this context (the worker's job)."""
    token = _running.set(task_id)
    try:
        yield
    finally:
        _running.reset(token)


def current_task_id() -> str:
    """Return the id of the task running here.

    Raises:
        RuntimeError: No task of the channel layer task backend runs here.
    """
    task_id = _running.get()
    if task_id is None:
        raise RuntimeError(
            "progress() reports on the task that calls it, but no task runs "
            "here: call it inside a task run by a worker of "
            "django_realtime.tasks.ChannelLayerTaskBackend (not from a view, "
            "nor under another TASKS backend)."
        )
    return task_id


def _report(task_id: str, data: Any) -> dict[str, Any]:
    return {"type": "task.progress", "id": task_id, "data": data}


def progress(data: Any) -> None:
    """Publish ``data`` (JSON-serialisable) to the running task's stream now.

    Raises:
        RuntimeError: Called outside a task run by the backend's worker.
        TypeError: ``data`` is not JSON-serialisable.
        ValueError: the report is over the stream's ``max_bytes``.
    """
    task_id = current_task_id()
    publish(stream_for(task_id), _report(task_id, data), immediately=True)


async def aprogress(data: Any) -> None:
    """Do what :func:`progress` does, from an async task."""
    task_id = current_task_id()
    await apublish(stream_for(task_id), _report(task_id, data), immediately=True)
