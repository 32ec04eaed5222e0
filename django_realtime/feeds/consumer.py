"""Serve feeds: a snapshot, then each subscriber's view of every change.

A :class:`FeedConsumer` is a :class:`~django_realtime.streams.StreamConsumer`
that answers two requests and allows subscriptions to feed streams:

``feed.snapshot`` ``{"feed": "jobs.job"}``, or with ``"pk": 7`` (one
row), or ``"query": "running", "params": {...}`` (a named query)
    Replies ``{"feed", "stream", "epoch", "offset", "rows", "version_field"}``
    and the view (``pk``, or ``query`` and ``params``): the rows of the
    view (:mod:`~.views`) the user may read now
    (:meth:`~.binding.Binding.readable`), and the stream's position read
    *before* them. Subscribing to
    ``stream`` with ``since`` that position then gives every change after
    the snapshot: none is missed. One the snapshot already has may come
    again; ``version_field`` lets the client skip it.
``feed.resume`` ``{"feed": "jobs.job", "pks": [1, 2]}``, with the view
of the snapshot
    Before a subscribe that resumes (on a new connection), says which rows
    the client holds and which view it follows, so that it hears ``leave``
    for those it may no longer read.

Each subscription to ``feed.<name>`` has a filter
(:class:`FeedFilter`): every publication, live or replayed, is checked
against the user's permissions at delivery, in batches
(:mod:`~django_realtime.feeds.access`), and sent as ``enter``, ``update``,
``leave`` or withheld (:func:`~django_realtime.feeds.events.view_of`).
A subscription follows one view of a feed (the snapshot's): a row outside
it counts as one the user may not read.

Refusals: ``unknown_feed`` (no such binding, or not served here),
``unknown_query`` (the binding has no query of that name),
``bad_parameters`` (a malformed request or query parameters, naming what
was expected),
``subscribed`` (a snapshot while subscribed to the feed); a subscribe to a
feed stream that is not served is refused with ``forbidden``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from django_realtime.delivery.db import call_with_fresh_connections
from django_realtime.delivery.sync import run_sync
from django_realtime.exceptions import RequestError
from django_realtime.feeds.access import AccessChecker, checker_for
from django_realtime.feeds.binding import STREAM_PREFIX, Binding, get_binding, pk_value
from django_realtime.feeds.events import (
    CREATE,
    DELETE,
    ENTER,
    LEAVE,
    RECHECK,
    UPDATE,
    view_of,
)
from django_realtime.feeds.publishing import serialize_rows, stats
from django_realtime.feeds.views import WHOLE, FeedView, view_of_request
from django_realtime.streams import StreamConsumer, get_stream_store
from django_realtime.streams.filters import PublicationFilter
from django_realtime.streams.positions import Publication, encode_data

__all__ = ["MAX_RESUME_ROWS", "FeedConsumer", "FeedFilter", "snapshot_rows"]

logger = logging.getLogger("django_realtime.feeds")

#: Most row keys a ``feed.resume`` may name.
MAX_RESUME_ROWS = 10_000


def snapshot_rows(
    binding: Binding, user: Any, view: FeedView = WHOLE
) -> list[dict[str, Any]]:
    """Return the rows of ``view`` ``user`` may read now, serialised (sync)."""
    rows = view.apply(binding.readable(user))[: binding.max_snapshot]
    return serialize_rows(binding, rows)


class FeedFilter:
    """The filter of one subscription to a feed: the user's view of each change.

    Args:
        binding: The feed's binding.
        user: The subscriber.
        held: The keys of the rows the subscriber holds; updated as it is
            sent ``enter`` and ``leave``.
        checker: The process's permission checker of the binding.
        view: What of the feed the subscription follows.
    """

    def __init__(
        self,
        binding: Binding,
        user: Any,
        held: set[Any],
        checker: AccessChecker,
        view: FeedView = WHOLE,
    ) -> None:
        self.binding = binding
        self.user = user
        self.held = held
        self.checker = checker
        self.view = view

    def withholds(self, publication: Publication) -> bool:
        """Return whether a live ``publication`` is withheld, without a query.

        True for a change of another row than the one a row's view follows,
        of a row the subscriber does not hold and may not read by the row
        rule applied to the published row (a later change that makes it
        readable is checked when it comes), or a deletion of one it does
        not hold. Anything else goes through :meth:`__call__`.
        """
        (change,) = self.checker.changes((publication,))
        if change is None or change.pk in self.held:
            return False
        if change.op == DELETE or (
            self.view.pk is not None
            and change.op != RECHECK
            and change.pk != self.view.pk
        ):
            stats.withheld += 1
            return True
        binding = self.binding
        row = change.row
        if (
            change.op not in (CREATE, UPDATE)
            or row is None
            or not binding.rule_fields
            or any(field not in row for field in binding.rule_fields)
        ):
            return False
        if binding.can_read(self.user, row):
            return False
        stats.withheld += 1
        return True

    async def __call__(self, publications: Sequence[Publication]) -> list[str | None]:
        """Return this subscriber's payload of each publication (``None``: withheld)."""
        changes = self.checker.changes(publications)
        only = self.view.pk
        # A row's view asks of its row only: the others are not in its view.
        asks = [
            change is not None
            and change.op in (CREATE, UPDATE)
            and (only is None or change.pk == only)
            for change in changes
        ]
        asked = [
            ((p.epoch, p.offset), change.pk)
            for p, change, ask in zip(publications, changes, asks, strict=True)
            if ask and change is not None
        ]
        verdicts = iter(await self.checker.readable(self.user, asked, self.view))
        payloads: list[str | None] = []
        for change, ask in zip(changes, asks, strict=True):
            view: dict[str, Any] | None = None
            if change is None:
                pass
            elif change.op == RECHECK:
                if change.user == getattr(self.user, "pk", None):
                    view = await self._recheck()
            else:
                view = view_of(change, ask and next(verdicts), self.held)
            if view is None:
                stats.withheld += 1
                payloads.append(None)
            else:
                stats.delivered += 1
                payloads.append(encode_data(view))
        return payloads

    async def _recheck(self) -> dict[str, Any] | None:
        """Reload the user; return the rows that entered and left their view."""
        self.user, rows = await run_sync(
            call_with_fresh_connections, self._reload, getattr(self.user, "pk", None)
        )
        entered = [row for row in rows if row["pk"] not in self.held]
        now = {row["pk"] for row in rows}
        left = sorted((pk for pk in self.held if pk not in now), key=repr)
        self.held.clear()
        self.held.update(now)
        if not entered and not left:
            return None
        return {"type": RECHECK, ENTER: entered, LEAVE: left}

    def _reload(self, user_pk: Any) -> tuple[Any, list[dict[str, Any]]]:
        user = get_user_model()._default_manager.filter(pk=user_pk).first()
        if user is None:
            return self.user, []
        return user, snapshot_rows(self.binding, user, self.view)


def _feed_name(data: Any) -> str:
    name = data.get("feed") if type(data) is dict else None
    if type(name) is not str or not name:
        raise RequestError(
            "bad_parameters",
            f'Expected {{"feed": <a feed\'s name>}}, got {str(data)[:200]}.',
        )
    return name


class FeedConsumer(StreamConsumer):
    """Serve feeds: snapshots, and each subscriber's filtered changes.

    Attributes:
        feeds: The names of the feeds served (``None``: every registered
            one). Override :meth:`authorize_stream` (calling ``super()``)
            to serve other streams too.
    """

    feeds: ClassVar[Collection[str] | None] = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Stream -> the rows the client said it holds, for its next subscribe.
        self._feed_held: dict[str, set[Any]] = {}
        # Stream -> the view the client follows, for its next subscribe.
        self._feed_views: dict[str, FeedView] = {}

    def feed_binding(self, name: str) -> Binding:
        """Return the binding of the feed ``name`` served here.

        Raises:
            RequestError: ``unknown_feed``.
        """
        binding = get_binding(name)
        if binding is None or (self.feeds is not None and name not in self.feeds):
            raise RequestError(
                "unknown_feed",
                f"No feed named {name[:200]!r} is served here: register a "
                "binding with that name (django_realtime.feeds.register).",
            )
        return binding

    def _stream_binding(self, stream: str) -> Binding | None:
        if not stream.startswith(STREAM_PREFIX):
            return None
        try:
            return self.feed_binding(stream[len(STREAM_PREFIX) :])
        except RequestError:
            return None

    async def authorize_stream(self, stream: str) -> bool:
        """Allow the streams of the feeds served here (each filtered per user)."""
        return self._stream_binding(stream) is not None

    def stream_filter(self, stream: str) -> PublicationFilter | None:
        """Return the filter of a feed subscription; ``None`` for other streams."""
        binding = self._stream_binding(stream)
        if binding is None:
            return None
        held = self._feed_held.pop(stream, set())
        view = self._feed_views.pop(stream, WHOLE)
        user = self.scope.get("user")
        return FeedFilter(binding, user, held, checker_for(binding), view)

    def _view(self, binding: Binding, data: Any) -> FeedView:
        view = view_of_request(binding.name, binding.queries, data)
        if view.pk is None:
            return view
        # As the feed carries it: "7" names the row 7 of an integer key.
        try:
            pk = binding.model._meta.pk.to_python(view.pk)
        except ValidationError as error:
            raise RequestError(
                "bad_parameters",
                f'Expected "pk" to be a key of {binding.model._meta.label}, '
                f"got {str(view.pk)[:200]!r} ({'; '.join(error.messages)}).",
            ) from None
        return replace(view, pk=pk_value(pk))

    async def request_feed_snapshot(self, data: Any) -> dict[str, Any]:
        """Return the rows of the view the user may read, and where to follow it.

        Raises:
            RequestError: ``bad_parameters``, ``unknown_feed``,
                ``unknown_query``, ``subscribed``.
        """
        binding = self.feed_binding(_feed_name(data))
        view = self._view(binding, data)
        stream = binding.stream
        if stream in self.stream_subscriptions:
            raise RequestError(
                "subscribed",
                f"Already subscribed to {stream!r}: unsubscribe before taking "
                "a snapshot.",
            )
        # The position first: a change committed after it is in the feed.
        position = (await get_stream_store().read(stream)).position
        user = self.scope.get("user")
        rows = await run_sync(
            call_with_fresh_connections, snapshot_rows, binding, user, view
        )
        self._feed_held[stream] = {row["pk"] for row in rows}
        self._feed_views[stream] = view
        return {
            **view.describe(),
            "feed": binding.name,
            "stream": stream,
            "epoch": position.epoch,
            "offset": position.offset,
            "rows": rows,
            "version_field": binding.version_field,
        }

    async def request_feed_resume(self, data: Any) -> dict[str, Any]:
        """Take the rows the client holds and its view, before it resubscribes.

        Raises:
            RequestError: ``bad_parameters``, ``unknown_feed``,
                ``unknown_query``.
        """
        binding = self.feed_binding(_feed_name(data))
        view = self._view(binding, data)
        pks = data.get("pks")
        if (
            type(pks) is not list
            or len(pks) > MAX_RESUME_ROWS
            or any(type(pk) not in (int, str) or len(str(pk)) > 200 for pk in pks)
        ):
            raise RequestError(
                "bad_parameters",
                f'Expected "pks" to be a list of at most {MAX_RESUME_ROWS} row '
                f"keys (integers or strings), got {str(pks)[:200]}.",
            )
        self._feed_held[binding.stream] = {pk_value(pk) for pk in pks}
        self._feed_views[binding.stream] = view
        return {"feed": binding.name, "held": len(pks)}
