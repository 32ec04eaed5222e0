"""The bindings the feed tests serve: the example's jobs, by owner or staff."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models
from django.urls import path

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.feeds import Binding, FeedConsumer, query, register
from django_realtime.routing import URLRouter
from example_project.jobs.models import Job

__all__ = ["QUERYSET_FEED", "RULE_FEED", "application"]

RULE_FEED = "test.jobs"
QUERYSET_FEED = "test.jobs.byqs"


def _readable(user: Any) -> models.QuerySet[Job]:
    if not user.is_authenticated:
        return Job.objects.none()
    if user.is_staff:
        return Job.objects.all()
    return Job.objects.filter(owner_id=user.pk)


@register
class OwnJobs(Binding):
    """Each user reads their own jobs; staff read all: a row rule."""

    model = Job
    name = RULE_FEED
    fields = ("owner_id", "kind", "status", "progress", "version")
    version_field = "version"
    rule_fields = ("owner_id",)
    queries = {
        "status": query(lambda qs, p: qs.filter(status=p["status"]), status=str),
        "running": lambda qs, p: qs.filter(status="running"),
        "progress": query(
            lambda qs, p: qs.filter(progress__gte=p["least"]), least=int, odd=bool
        ),
    }

    def readable(self, user: Any) -> models.QuerySet[Job]:
        return _readable(user)

    def can_read(self, user: Any, row: Mapping[str, Any]) -> bool:
        return bool(user.is_staff) or row["owner_id"] == user.pk

    def serialize(self, instance: models.Model) -> dict[str, Any]:
        row = super().serialize(instance)
        if row["kind"] == "explode":
            raise ValueError("This row cannot be serialised.")
        return row


@register
class OwnJobsByQueryset(Binding):
    """The same rule, as a queryset per user only."""

    model = Job
    name = QUERYSET_FEED
    fields = ("owner_id", "status", "version")
    version_field = "version"
    queries = {"running": lambda qs, p: qs.filter(status="running")}

    def readable(self, user: Any) -> models.QuerySet[Job]:
        return _readable(user)

    def audience(self, user: Any) -> Any:
        return "staff" if user.is_staff else user.pk


class Feeds(FeedConsumer):
    feeds = (RULE_FEED, QUERYSET_FEED)


def application() -> Any:
    """Return the feeds socket behind the auth stack."""
    return AuthMiddlewareStack(URLRouter([path("ws/feeds/", Feeds.as_asgi())]))
