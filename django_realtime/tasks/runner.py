"""The worker side: an ASGI channel application that runs enqueued tasks.

Route each queue's channel to :class:`TaskWorkerApplication` and run
``manage.py runworker tasks.<queue>``::

    application = ProtocolTypeRouter({
        "websocket": ...,
        "channel": ChannelNameRouter({"tasks.default": TaskWorkerApplication()}),
    })

For each ``task.run`` message the application:

1. claims the task's row, ``READY`` to ``RUNNING`` in one ``UPDATE``
   filtered on ``READY``, adding this worker's id to ``worker_ids``; a
   message delivered twice, or to two workers, finds the row claimed and is
   skipped, so the task runs once;
2. runs the function: an async one on the worker's event loop, a sync one
   on django_realtime's pool of threads, with healthy database connections
   before and after (as Django does around a request);
3. records ``SUCCESSFUL`` and the JSON-normalised return value, or
   ``FAILED`` and the exception's class path and traceback, with
   ``finished_at``; then publishes the outcome on the task's stream.

Tasks of one queue run one at a time per worker process, in the order they
were sent; run more ``runworker`` processes for more at once.

Stopping: ``runworker`` lets a running task finish for
``--shutdown-timeout`` seconds. An async task still running then is
cancelled, its row goes back to ``READY`` and its message back to the
channel, so another worker runs it again (another attempt). A sync task
cannot be interrupted: the worker waits for it to end and records its
outcome. A worker killed outright (``SIGKILL``, power loss) leaves its task
``RUNNING``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.tasks import Task, TaskContext, TaskResult, task_backends
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json

from django_realtime.delivery.db import (
    aclose_old_connections,
    call_with_fresh_connections,
)
from django_realtime.delivery.sync import run_sync
from django_realtime.models import TaskRecord
from django_realtime.streams.publishing import apublish
from django_realtime.tasks.backend import ChannelLayerTaskBackend
from django_realtime.tasks.messages import (
    RUN,
    error_of,
    finished,
    requeued,
    result_of,
    started,
    stream_for,
    task_of,
)
from django_realtime.tasks.progress import running

__all__ = ["TaskWorkerApplication"]

logger = logging.getLogger(__name__)


def _claim(database: str, task_id: str, worker_id: str) -> TaskRecord | None:
    """Move the task from READY to RUNNING; return its row, or None if taken."""
    now = timezone.now()
    rows = TaskRecord.objects.using(database)
    with transaction.atomic(using=database):
        if not rows.filter(pk=task_id, status="READY").update(
            status="RUNNING", started_at=now, last_attempted_at=now
        ):
            return None
        record = rows.get(pk=task_id)
        record.worker_ids = [*record.worker_ids, worker_id]
        record.save(using=database, update_fields=["worker_ids"])
    return record


class TaskWorkerApplication:
    """Run the tasks sent to a ``tasks.<queue>`` channel (a ``channel`` scope).

    Args:
        worker_id: How this worker appears in ``TaskResult.worker_ids``;
            ``"<hostname>:<pid>"`` by default.
    """

    def __init__(self, worker_id: str | None = None) -> None:
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run each task whose message arrives, one at a time, until cancelled."""
        if scope.get("type") != "channel":
            raise ValueError(
                "TaskWorkerApplication runs under runworker, in a 'channel' "
                f"scope; got a {scope.get('type')!r} scope. Route it with "
                "ChannelNameRouter under the 'channel' key."
            )
        channel: str = scope["channel"]
        while True:
            message = await receive()
            await aclose_old_connections()
            await self.handle(channel, message)

    async def handle(self, channel: str, message: dict[str, Any]) -> None:
        """Run the task ``message`` names, unless another delivery did."""
        task_id = message.get("id")
        alias = message.get("backend")
        if message.get("type") != RUN or not isinstance(task_id, str):
            logger.error(
                "Task worker on %r dropped a message: expected %r with an 'id', got %r",
                channel,
                RUN,
                message.get("type"),
            )
            return
        backend = task_backends[alias if isinstance(alias, str) else "default"]
        if not isinstance(backend, ChannelLayerTaskBackend):
            logger.error(
                "Task worker on %r dropped task %s: TASKS[%r] is a %s, not a "
                "ChannelLayerTaskBackend",
                channel,
                task_id,
                alias,
                type(backend).__name__,
            )
            return
        claiming = asyncio.ensure_future(
            sync_to_async(_claim)(backend.database, task_id, self.worker_id)
        )
        try:
            record = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # The UPDATE may still commit: wait for it, and undo it if it did.
            record = await claiming
            if record is not None:
                await self._requeue(backend, record, channel, message)
            raise
        if record is None:
            logger.info("Task %s is not READY (run elsewhere); skipped", task_id)
            return
        try:
            await self._run(backend, record)
        except asyncio.CancelledError:
            if record.status == "RUNNING":
                await self._requeue(backend, record, channel, message)
            raise

    async def _run(self, backend: ChannelLayerTaskBackend, record: TaskRecord) -> None:
        """Run a claimed task and record its outcome.

        Raises:
            asyncio.CancelledError: The worker is stopping; if the task did
                not finish, ``record.status`` is still ``"RUNNING"``.
        """
        try:
            task = task_of(record)
        except ValueError as exc:
            await self._finish(backend, record, None, None, exc)
            return
        result = result_of(record, task)
        await task_started.asend(type(backend), task_result=result)
        await self._publish(record.id, started(record.id, len(record.worker_ids)))
        value, error, cancelled = await self._call(task, result)
        await self._finish(backend, record, task, value, error)
        if cancelled:
            raise asyncio.CancelledError

    async def _call(
        self, task: Task[..., Any], result: TaskResult[..., Any]
    ) -> tuple[Any, BaseException | None, bool]:
        """Run the task; return its value, its exception, and whether we were cancelled.

        An async task's cancellation propagates. A sync task runs to its end
        even if the worker is cancelled meanwhile (a thread cannot be
        interrupted); the third item says so.
        """
        args: list[Any] = list(result.args)
        if task.takes_context:
            args.insert(0, TaskContext(task_result=result))
        with running(result.id):
            if iscoroutinefunction(task.func):
                try:
                    return await task.func(*args, **result.kwargs), None, False
                except (KeyboardInterrupt, asyncio.CancelledError):
                    raise
                except BaseException as exc:
                    return None, exc, False
            call = asyncio.ensure_future(
                run_sync(call_with_fresh_connections, task.func, *args, **result.kwargs)
            )
        cancelled = False
        while not call.done():
            try:
                await asyncio.wait({call})
            except asyncio.CancelledError:
                cancelled = True
                logger.warning(
                    "Worker stopping: waiting for sync task %s to end", result.id
                )
        error = call.exception()
        return (None if error else call.result()), error, cancelled

    async def _finish(
        self,
        backend: ChannelLayerTaskBackend,
        record: TaskRecord,
        task: Task[..., Any] | None,
        value: Any,
        error: BaseException | None,
    ) -> None:
        """Record the outcome, publish it, and send ``task_finished``."""
        if error is None:
            try:
                record.return_value = normalize_json(value)
            except Exception as exc:  # not JSON-serialisable
                error = exc
        if error is None:
            record.status = "SUCCESSFUL"
        else:
            record.status = "FAILED"
            record.return_value = None
            record.errors = [*record.errors, error_of(error)]
        record.finished_at = timezone.now()
        await (
            TaskRecord.objects.using(backend.database)
            .filter(pk=record.pk)
            .aupdate(
                status=record.status,
                finished_at=record.finished_at,
                return_value=record.return_value,
                errors=record.errors,
            )
        )
        await self._publish(record.id, finished(record))
        if task is not None:
            await task_finished.asend(
                type(backend), task_result=result_of(record, task)
            )
        else:
            logger.error("Task %s failed to start: %s", record.id, error)

    async def _requeue(
        self,
        backend: ChannelLayerTaskBackend,
        record: TaskRecord,
        channel: str,
        message: dict[str, Any],
    ) -> None:
        """Put an interrupted task back: row READY again, message re-sent."""
        await (
            TaskRecord.objects.using(backend.database)
            .filter(pk=record.pk, status="RUNNING")
            .aupdate(status="READY")
        )
        await backend._layer().send(channel, message)
        await self._publish(record.id, requeued(record.id))
        logger.warning("Task %s interrupted; sent back to %r", record.id, channel)

    async def _publish(self, task_id: str, data: dict[str, Any]) -> None:
        """Publish on the task's stream; the row stays the truth if this fails."""
        try:
            await apublish(stream_for(task_id), data, immediately=True)
        except Exception:
            logger.exception("Could not publish %r of task %s", data["type"], task_id)
