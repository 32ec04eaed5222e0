"""django_realtime's tables in the project's database.

:class:`StreamOutbox` holds publications written inside a transaction for a
stream store that lives elsewhere (Redis): they are relayed to the store
once the transaction commits, and by any process that serves streams if
the publisher died first (see :mod:`django_realtime.streams.relay`).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

__all__ = ["StreamOutbox"]


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
