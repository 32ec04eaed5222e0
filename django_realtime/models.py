"""django_realtime's tables in the project's database.

:class:`StreamOutbox` holds publications written inside a transaction for a
stream store that lives elsewhere (Redis): they are relayed to the store
once the transaction commits, and again by any process if the publisher
died first (see :mod:`django_realtime.streams.publishing`).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

__all__ = ["StreamOutbox"]


class StreamOutbox(models.Model):
    """A committed publication not yet relayed to the stream store."""

    id = models.BigAutoField(primary_key=True)
    stream = models.CharField(max_length=200)
    data = models.TextField()
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "django_realtime_outbox"
        ordering = ["id"]
        verbose_name = "stream outbox entry"
        verbose_name_plural = "stream outbox"

    def __str__(self) -> str:
        return f"{self.stream} #{self.pk}"
