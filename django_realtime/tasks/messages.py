"""Names, messages and publications of the channel layer task backend.

Pure functions, no I/O: the channel a queue's tasks are sent to, the stream
a task reports on, the message a worker receives, the JSON a page reads on
the task's stream, and the conversion of a stored row into Django's
:class:`~django.tasks.TaskResult`.

On the stream ``task.<id>`` a task publishes, in order:

- ``{"type": "task.started", "id": ID, "attempt": N}`` when a worker claims it;
- ``{"type": "task.progress", "id": ID, "data": DATA}`` for each
  :func:`~django_realtime.tasks.progress` call;
- ``{"type": "task.requeued", "id": ID}`` if its worker stopped mid-task and
  put it back in the queue;
- ``{"type": "task.finished", "id": ID, "status": "SUCCESSFUL",
  "return_value": VALUE}`` or ``{"type": "task.finished", "id": ID,
  "status": "FAILED", "error": "module.ExceptionClass"}``. The traceback
  stays in the database (``get_result().errors``), out of pages.
"""

from __future__ import annotations

import dataclasses
from traceback import format_exception
from typing import Any, ParamSpec, TypeVar

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.utils.module_loading import import_string

from django_realtime.models import TaskRecord

__all__ = [
    "CHANNEL_PREFIX",
    "RUN",
    "channel_for",
    "error_of",
    "finished",
    "result_of",
    "run_message",
    "started",
    "stream_for",
    "task_of",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: The ``type`` of the message that asks a worker to run a task.
RUN = "task.run"

#: What a queue's name is prefixed with to name its channel, by default.
CHANNEL_PREFIX = "tasks."
_STREAM_PREFIX = "task."


def channel_for(queue_name: str, prefix: str = CHANNEL_PREFIX) -> str:
    """Return the channel a queue's tasks are sent to: ``tasks.<queue_name>``.

    ``prefix`` is the backend's ``OPTIONS["channel_prefix"]``.
    """
    return f"{prefix}{queue_name}"


def stream_for(task_id: str) -> str:
    """Return the stream a task reports on: ``task.<task_id>``."""
    return f"{_STREAM_PREFIX}{task_id}"


def task_id_of(stream: str) -> str | None:
    """Return the task id in a ``task.<id>`` stream name, or ``None``."""
    if not stream.startswith(_STREAM_PREFIX):
        return None
    task_id = stream.removeprefix(_STREAM_PREFIX)
    return task_id if task_id.isalnum() else None


def run_message(task_id: str, backend: str) -> dict[str, Any]:
    """Return the message that asks a worker to run the task ``task_id``."""
    return {"type": RUN, "id": task_id, "backend": backend}


def started(task_id: str, attempt: int) -> dict[str, Any]:
    """Return the publication of a task's start."""
    return {"type": "task.started", "id": task_id, "attempt": attempt}


def requeued(task_id: str) -> dict[str, Any]:
    """Return the publication of a task put back in its queue."""
    return {"type": "task.requeued", "id": task_id}


def finished(record: TaskRecord) -> dict[str, Any]:
    """Return the publication of a finished task's outcome."""
    data: dict[str, Any] = {
        "type": "task.finished",
        "id": record.id,
        "status": record.status,
    }
    if record.status == TaskResultStatus.SUCCESSFUL:
        data["return_value"] = record.return_value
    elif record.errors:
        data["error"] = record.errors[-1]["exception_class_path"]
    return data


def error_of(exc: BaseException) -> dict[str, str]:
    """Return how a task's exception is stored: its class path and traceback."""
    kind = type(exc)
    return {
        "exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
        "traceback": "".join(format_exception(exc)),
    }


def task_of(record: TaskRecord) -> Task[..., Any]:
    """Return the :class:`~django.tasks.Task` a row was enqueued with.

    Raises:
        ValueError: ``record.task_path`` does not name a ``Task`` (the code
            changed since the task was enqueued).
    """
    try:
        task = import_string(record.task_path)
    except ImportError as exc:
        raise ValueError(
            f"Expected {record.task_path!r} to name a task (a function "
            f"decorated with @task), but it cannot be imported: {exc}"
        ) from exc
    if not isinstance(task, Task):
        raise ValueError(
            f"Expected {record.task_path!r} to name a task (a function "
            f"decorated with @task), got a {type(task).__name__}."
        )
    return dataclasses.replace(
        task,
        priority=record.priority,
        queue_name=record.queue_name,
        backend=record.backend,
    )


def result_of(record: TaskRecord, task: Task[_P, _R]) -> TaskResult[_P, _R]:
    """Return the :class:`~django.tasks.TaskResult` a stored row stands for."""
    result = TaskResult(
        task=task,
        id=record.id,
        status=TaskResultStatus(record.status),
        enqueued_at=record.enqueued_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        last_attempted_at=record.last_attempted_at,
        args=list(record.args),
        kwargs=dict(record.kwargs),
        backend=record.backend,
        errors=[TaskError(**error) for error in record.errors],
        worker_ids=list(record.worker_ids),
    )
    # TaskResult is frozen and keeps the value in a field set after init.
    object.__setattr__(result, "_return_value", record.return_value)
    return result
