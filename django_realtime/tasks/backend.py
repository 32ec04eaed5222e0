"""A ``TASKS`` backend that hands tasks to ``runworker`` through a channel layer.

Configure it as Django's task framework expects::

    TASKS = {
        "default": {
            "BACKEND": "django_realtime.tasks.ChannelLayerTaskBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"channel_layer": "default", "database": "default"},
        }
    }

``enqueue()`` writes a :class:`~django_realtime.models.TaskRecord` in
``OPTIONS["database"]`` and sends ``{"type": "task.run", "id": ...,
"backend": ...}`` to the queue's channel, ``tasks.<queue>``, of
``OPTIONS["channel_layer"]``. Inside ``transaction.atomic()`` on that
database, the row is part of the transaction and the message goes when it
commits: a rolled-back enqueue leaves nothing, and a worker never receives
the id of a row it cannot see. Outside a transaction both happen at once.

If the layer refuses the message (full, unreachable), the row is marked
``FAILED`` with that error and the exception propagates from ``enqueue()``
(from the commit, inside a transaction), so no task waits forever unseen.

Capabilities: async tasks and ``get_result()`` from any process, yes;
``priority`` and ``run_after``, no (a channel is first in, first out, and
has no clock), so Django refuses tasks that set them.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import async_to_sync
from django.core import checks
from django.db import transaction
from django.tasks import Task, TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json

from django_realtime.layers import channel_layers, get_channel_layer
from django_realtime.models import TaskRecord
from django_realtime.tasks.access import current_owner
from django_realtime.tasks.messages import (
    CHANNEL_PREFIX,
    channel_for,
    error_of,
    result_of,
    run_message,
    task_of,
)

__all__ = ["ChannelLayerTaskBackend"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class ChannelLayerTaskBackend(BaseTaskBackend):
    """Run tasks in ``runworker`` processes; keep their results in the database.

    ``OPTIONS``:

    ``channel_layer``
        The ``CHANNEL_LAYERS`` alias tasks are sent through (``"default"``).
        Use one that crosses processes (Redis, SQLite, PostgreSQL, RabbitMQ).
    ``database``
        The ``DATABASES`` alias of the task rows (``"default"``).
    ``channel_prefix``
        Prefixed to a queue's name to name its channel (``"tasks."``). With
        ``""``, the queue ``"jobs"`` is the channel ``"jobs"``, which lets a
        channel consumer of that name take tasks too (its ``task_run``
        handler calls :meth:`TaskWorkerApplication.handle
        <django_realtime.tasks.TaskWorkerApplication.handle>`).
    """

    supports_defer = False
    supports_async_task = True
    supports_get_result = True
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.channel_layer_alias: str = self.options.get("channel_layer", "default")
        self.database: str = self.options.get("database", "default")
        self.channel_prefix: str = self.options.get("channel_prefix", CHANNEL_PREFIX)

    def channel_for(self, queue_name: str) -> str:
        """Return the channel of the queue ``queue_name``."""
        return channel_for(queue_name, self.channel_prefix)

    # Enqueueing

    def _record(self, task: Task[..., Any], args: Any, kwargs: Any) -> TaskRecord:
        self.validate_task(task)
        return TaskRecord(
            id=uuid.uuid4().hex,
            backend=self.alias,
            queue_name=task.queue_name,
            task_path=task.module_path,
            priority=task.priority,
            takes_context=task.takes_context,
            args=normalize_json(list(args)),
            kwargs=normalize_json(dict(kwargs)),
            status="READY",
            enqueued_at=timezone.now(),
            owner_id=current_owner(),
        )

    def _layer(self) -> Any:
        layer = get_channel_layer(self.channel_layer_alias)
        if layer is None:
            raise ValueError(
                f"TASKS[{self.alias!r}] sends tasks through the channel layer "
                f"{self.channel_layer_alias!r}, but CHANNEL_LAYERS has no such "
                "alias. Add it, or set OPTIONS['channel_layer']."
            )
        return layer

    def enqueue(
        self, task: Task[_P, _R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[_P, _R]:
        """Store the task and send it to its queue's channel (at the commit)."""
        record = self._record(task, args, kwargs)
        record.save(using=self.database, force_insert=True)
        result = result_of(record, task)
        transaction.on_commit(
            functools.partial(self._send, record, result), using=self.database
        )
        return result

    def _send(self, record: TaskRecord, result: TaskResult[..., Any]) -> None:
        try:
            async_to_sync(self._layer().send)(
                self.channel_for(record.queue_name), run_message(record.id, self.alias)
            )
        except Exception as exc:
            self._refused(record, exc)
            raise
        task_enqueued.send(type(self), task_result=result)

    def _refused(self, record: TaskRecord, exc: Exception) -> None:
        TaskRecord.objects.using(self.database).filter(pk=record.pk).update(
            status="FAILED", finished_at=timezone.now(), errors=[error_of(exc)]
        )

    async def aenqueue(
        self, task: Task[_P, _R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[_P, _R]:
        """Store the task and send it to its queue's channel, from async code."""
        record = self._record(task, args, kwargs)
        await record.asave(using=self.database, force_insert=True)
        result = result_of(record, task)
        try:
            await self._layer().send(
                self.channel_for(record.queue_name), run_message(record.id, self.alias)
            )
        except Exception as exc:
            await (
                TaskRecord.objects.using(self.database)
                .filter(pk=record.pk)
                .aupdate(
                    status="FAILED", finished_at=timezone.now(), errors=[error_of(exc)]
                )
            )
            raise
        await task_enqueued.asend(type(self), task_result=result)
        return result

    # Results

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        """Return the task's current result, read from the database.

        Raises:
            TaskResultDoesNotExist: No task of this backend has that id.
        """
        try:
            record = TaskRecord.objects.using(self.database).get(
                pk=result_id, backend=self.alias
            )
        except TaskRecord.DoesNotExist:
            raise TaskResultDoesNotExist(result_id) from None
        return result_of(record, task_of(record))

    async def aget_result(self, result_id: str) -> TaskResult[..., Any]:
        """Do what :meth:`get_result` does, from async code."""
        try:
            record = await TaskRecord.objects.using(self.database).aget(
                pk=result_id, backend=self.alias
            )
        except TaskRecord.DoesNotExist:
            raise TaskResultDoesNotExist(result_id) from None
        return result_of(record, task_of(record))

    # Checks

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Report a channel layer or database alias that is not configured."""
        from django.conf import settings

        errors: list[checks.CheckMessage] = []
        if self.channel_layer_alias not in channel_layers.configs:
            errors.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] sends tasks through the channel layer "
                    f"{self.channel_layer_alias!r}, which CHANNEL_LAYERS does not "
                    "define.",
                    hint="Add it to CHANNEL_LAYERS or set OPTIONS['channel_layer'].",
                    id="django_realtime.E101",
                )
            )
        if self.database not in settings.DATABASES:
            errors.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] keeps tasks in the database "
                    f"{self.database!r}, which DATABASES does not define.",
                    hint="Set OPTIONS['database'] to a DATABASES alias.",
                    id="django_realtime.E102",
                )
            )
        return errors
