"""Model change feeds: live querysets, filtered per user on delivery and on replay.

Declare a :class:`Binding` and :func:`register` it; serve it with a
:class:`FeedConsumer`; keep a collection in sync in the browser with
realtime.js's ``collection()``. See ``docs/topics/feeds.rst``.
"""

from django_realtime.feeds import checks as _checks  # registers the system check
from django_realtime.feeds.binding import Binding, autodiscover, get_binding
from django_realtime.feeds.consumer import FeedConsumer, FeedFilter
from django_realtime.feeds.publishing import (
    FeedQuerySet,
    FeedStats,
    publish_changes,
    publish_immediately,
    recheck,
    register,
    stats,
)
from django_realtime.feeds.views import FeedView, Query, query

__all__ = [
    "Binding",
    "FeedConsumer",
    "FeedFilter",
    "FeedQuerySet",
    "FeedStats",
    "FeedView",
    "Query",
    "autodiscover",
    "get_binding",
    "publish_changes",
    "publish_immediately",
    "query",
    "recheck",
    "register",
    "stats",
]

del _checks
