"""django_realtime's tables in the project's database.

:class:`StreamOutbox` holds publications written inside a transaction for a
stream store that lives elsewhere (Redis): they are relayed to the store
once the transaction commits, and by any process that serves streams if
the publisher died first (see :mod:`django_realtime.streams.relay`).

:class:`TaskRecord` holds one task enqueued through
:class:`django_realtime.tasks.ChannelLayerTaskBackend` (Django 6's task
framework): its arguments, its status, and its outcome once a worker ran it.
The table exists on every Django version; only the backend needs Django 6.

:class:`RealtimeOps` has no table: it carries the permissions of the ops
page in the admin (:mod:`django_realtime.ops.console`) and names its
entries in the admin log.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

__all__ = ["RealtimeOps", "StreamOutbox", "TaskRecord"]


class StreamOutbox(models.Model):
    """A publication written in a transaction, not yet relayed to the store.

    ``key`` names the row in the store (see
    :meth:`~django_realtime.streams.stores.base.HistoryStore.publish_once`),
    so that a row relayed again after a crash is published once. Unlike the
    ``id``, it is never reused, not even after the table is emptied.
    """

    id = models.BigAutoField(primary_key=True)
    stream = models.CharField(max_length=200)
    data = models.TextField()
    key = models.UUIDField(default=uuid.uuid4, editable=False)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "django_realtime_outbox"
        ordering = ["id"]
        verbose_name = "stream outbox entry"
        verbose_name_plural = "stream outbox"

    def __str__(self) -> str:
        return f"{self.stream} #{self.pk}"


class TaskRecord(models.Model):
    """A task enqueued through the channel layer task backend, and its outcome.

    ``status`` takes the values of ``django.tasks.TaskResultStatus``
    (``READY``, ``RUNNING``, ``FAILED``, ``SUCCESSFUL``); a worker moves a row
    from ``READY`` to ``RUNNING`` in one ``UPDATE`` filtered on ``READY``, so
    a task delivered twice runs once. ``errors`` is a list of
    ``{"exception_class_path", "traceback"}`` objects, ``worker_ids`` one
    entry per attempt. ``owner_id`` is the primary key, as text, of the user
    who enqueued the task inside ``django_realtime.tasks.enqueued_by()``
    (empty otherwise).
    """

    STATUSES = [
        ("READY", "Ready"),
        ("RUNNING", "Running"),
        ("FAILED", "Failed"),
        ("SUCCESSFUL", "Successful"),
    ]

    id = models.CharField(primary_key=True, max_length=32, editable=False)
    backend = models.CharField(max_length=100)
    queue_name = models.CharField(max_length=100)
    task_path = models.CharField(max_length=300)
    priority = models.SmallIntegerField(default=0)
    takes_context = models.BooleanField(default=False)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    status = models.CharField(
        max_length=10, choices=STATUSES, default="READY", db_index=True
    )
    enqueued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    return_value = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list)
    worker_ids = models.JSONField(default=list)
    owner_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        db_table = "django_realtime_task"
        ordering = ["enqueued_at"]
        verbose_name = "task"
        verbose_name_plural = "tasks"

    def __str__(self) -> str:
        return f"{self.task_path} {self.id} ({self.status})"


class RealtimeOps(models.Model):
    """The ops page of the admin: its permissions (no table).

    ``django_realtime.view_realtime_ops`` shows the live connections and
    streams; ``django_realtime.change_realtime_ops`` also closes
    connections and drains processes.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_realtime_ops", "Can see live connections and streams"),
            ("change_realtime_ops", "Can close connections and drain processes"),
        ]
        verbose_name = "real-time ops"
        verbose_name_plural = "real-time ops"

    def __str__(self) -> str:
        return "real-time ops"
