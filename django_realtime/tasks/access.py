"""Who may follow a task's stream: the user who enqueued it.

Enqueue inside :func:`enqueued_by` to store the user on the task's row, then
let a :class:`~django_realtime.streams.StreamConsumer` allow a ``task.<id>``
stream to that user only::

    with enqueued_by(request.user):
        result = count_primes.enqueue(1_000_000)

    class TaskStreamConsumer(StreamConsumer):
        async def authorize_stream(self, stream):
            return await acan_follow(self.scope["user"], stream)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends

from django_realtime.models import TaskRecord
from django_realtime.tasks.messages import task_id_of

__all__ = ["acan_follow", "can_follow", "current_owner", "enqueued_by"]

_owner: contextvars.ContextVar[str] = contextvars.ContextVar(
    "django_realtime_task_owner", default=""
)


@contextlib.contextmanager
def enqueued_by(user: Any) -> Iterator[None]:
    """Store ``user`` as the owner of the tasks enqueued in this block.

    An anonymous user (or ``None``) stores no owner.
    """
    owner = (
        str(user.pk)
        if user is not None and getattr(user, "is_authenticated", False)
        else ""
    )
    token = _owner.set(owner)
    try:
        yield
    finally:
        _owner.reset(token)


def current_owner() -> str:
    """Return the owner :func:`enqueued_by` set here, as text, or ``""``."""
    return _owner.get()


def can_follow(
    user: Any, stream: str, *, backend: str = DEFAULT_TASK_BACKEND_ALIAS
) -> bool:
    """Return whether ``user`` enqueued the task whose stream is ``stream``.

    ``False`` for a stream that is not ``task.<id>``, an unknown task, a
    task enqueued outside :func:`enqueued_by`, and an anonymous user.
    """
    task_id = task_id_of(stream)
    if task_id is None or user is None or not getattr(user, "is_authenticated", False):
        return False
    database = getattr(task_backends[backend], "database", "default")
    return (
        TaskRecord.objects.using(database)
        .filter(pk=task_id, owner_id=str(user.pk))
        .exists()
    )


async def acan_follow(
    user: Any, stream: str, *, backend: str = DEFAULT_TASK_BACKEND_ALIAS
) -> bool:
    """Do what :func:`can_follow` does, from async code (``authorize_stream``)."""
    if task_id_of(stream) is None:
        return False
    allowed: bool = await sync_to_async(can_follow)(user, stream, backend=backend)
    return allowed
