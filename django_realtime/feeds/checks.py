"""System checks of feeds: bound models whose bulk paths publish nothing."""

from __future__ import annotations

from typing import Any

from django.core import checks

from django_realtime.feeds.binding import registered
from django_realtime.feeds.publishing import FeedQuerySet

__all__ = ["check_bulk_paths"]


@checks.register()
def check_bulk_paths(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn of each bound model whose default manager is not a FeedQuerySet's.

    ``django_realtime.feeds.W001``: its ``QuerySet.update()``,
    ``bulk_create()`` and ``bulk_update()`` send no signal and publish
    nothing.
    """
    messages: list[checks.CheckMessage] = []
    seen = set()
    for binding in registered():
        model = binding.model
        if model in seen:
            continue
        seen.add(model)
        queryset = model._default_manager.all()
        if not isinstance(queryset, FeedQuerySet):
            messages.append(
                checks.Warning(
                    f"{model._meta.label} is bound to the feed {binding.name!r}, "
                    "but its default manager's update(), bulk_create() and "
                    "bulk_update() publish nothing.",
                    hint="Build its manager on django_realtime.feeds.FeedQuerySet, "
                    "or call publish_changes() after each bulk change.",
                    obj=model,
                    id="django_realtime.feeds.W001",
                )
            )
    return messages
