"""System checks of feeds: bound models whose bulk paths publish nothing."""

from __future__ import annotations

from typing import Any

from django.core import checks

from django_realtime.feeds.binding import registered
from django_realtime.feeds.publishing import FeedQuerySet

__all__ = ["check_bulk_paths", "check_version_fields"]


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


@checks.register()
def check_version_fields(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn of each binding without a version field.

    ``django_realtime.feeds.W002``: without one, a change that both a
    snapshot and the feed carry can be applied twice by a client, the
    second time over a newer state (until the row's next change).
    """
    return [
        checks.Warning(
            f"The feed {binding.name!r} has no version_field: a change made "
            "while a client takes its snapshot can reach it twice, and set a "
            "row back to an older state until the row's next change.",
            hint="Add a PositiveBigIntegerField that each change adds one to "
            "(FeedQuerySet.update() and bulk_update() do it for you) and name "
            "it in the binding's version_field.",
            obj=binding.model,
            id="django_realtime.feeds.W002",
        )
        for binding in registered()
        if not binding.version_field
    ]
