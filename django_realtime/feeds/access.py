"""Check who may read which rows, in batches shared by a process's subscribers.

One :class:`AccessChecker` per binding and process (:func:`checker_for`)
answers "which of these publications' rows may this user read now?" for
every subscriber of the feed in the process. What it reads from the
database is kept for :data:`SHARE_FOR` seconds, by publication, so that
all subscribers that receive the same publications share one read:

- with a row rule (:attr:`~.binding.Binding.rule_fields`), one query reads
  the current values of the rule's fields for the batch's rows, and each
  subscriber's :meth:`~.binding.Binding.can_read` runs in Python: **one
  query per batch of publications per process**, whatever the number of
  subscribers;
- without one, one query per batch and distinct
  :meth:`~.binding.Binding.audience` (``readable(user).filter(pk__in=...)``);
- for subscriptions that follow a named query, the same, restricted to
  the query's rows, per distinct query and parameters: one query per batch
  and view with a row rule, per batch, view and audience without.

A value is read after the publication it is asked for was announced (that
is, after its commit), so it is never older than the change published.
Concurrent askers wait for one read instead of making their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import Any

from django.db import models

from django_realtime.delivery.db import call_with_fresh_connections
from django_realtime.delivery.sync import run_sync
from django_realtime.feeds.binding import Binding, pk_value
from django_realtime.feeds.events import Change, parse_event
from django_realtime.feeds.publishing import stats
from django_realtime.feeds.views import WHOLE, FeedView
from django_realtime.streams.positions import Publication

__all__ = ["SHARE_FOR", "AccessChecker", "checker_for"]

#: Seconds a permission read is shared with other subscribers.
SHARE_FOR = 1.0

# Cached entries above which the stale ones are dropped.
_SWEEP_ABOVE = 50_000

#: A publication's place, ``(epoch, offset)``: what reads are cached by.
Key = tuple[str, int]

_MISSING = object()


class AccessChecker:
    """Say which rows subscribers of one binding may read, sharing the reads.

    Args:
        binding: The feed's binding.
        clock: Seconds, never going back.
    """

    def __init__(
        self, binding: Binding, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.binding = binding
        self.clock = clock
        # Key (with the audience, without a row rule) -> (read at, value).
        self._cache: dict[Hashable, tuple[float, Any]] = {}
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        # Key -> the publication's change, decoded once for all subscribers.
        self._changes: dict[Key, Change | None] = {}

    def changes(self, publications: Sequence[Publication]) -> list[Change | None]:
        """Return the change each publication holds (``None``: not a feed's)."""
        decoded = self._changes
        if len(decoded) > _SWEEP_ABOVE:
            decoded.clear()
        result = []
        for publication in publications:
            key = (publication.epoch, publication.offset)
            try:
                change = decoded[key]
            except KeyError:
                change = decoded[key] = parse_event(publication.data)
            result.append(change)
        return result

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    async def readable(
        self, user: Any, items: Sequence[tuple[Key, Any]], view: FeedView = WHOLE
    ) -> list[bool]:
        """Return whether ``user`` may read now the row ``pk`` of each ``(key, pk)``.

        And whether it is in ``view`` now: a query's view reads the rows of
        the query only, in the same query (a row's view is the caller's to
        apply: it needs no query of its own).
        """
        if not items:
            return []
        binding = self.binding
        # A row's view reads as the whole feed does, and shares its reads.
        scope: tuple[Hashable, ...] = () if view.filter is None else ("view", view.key)
        if binding.rule_fields:
            rows = await self._read(
                items, scope or None, partial(self._rule_rows, view)
            )
            return [
                row is not None and bool(binding.can_read(user, row)) for row in rows
            ]
        audience = binding.audience(user)
        answers = await self._read(
            items,
            (*scope, "audience", audience),
            partial(self._readable_pks, user, view),
        )
        return [bool(answer) for answer in answers]

    async def _read(
        self,
        items: Sequence[tuple[Key, Any]],
        scope: Hashable,
        fetch: Callable[[list[Any]], dict[Any, Any]],
    ) -> list[Any]:
        """Return the cached value of each item, reading those missing in one query."""
        values = self._cached(items, scope)
        if any(value is _MISSING for value in values):
            async with self._get_lock():
                # Another asker may have read them while this one waited.
                values = self._cached(items, scope)
                missing = [
                    item
                    for item, value in zip(items, values, strict=True)
                    if value is _MISSING
                ]
                if missing:
                    await self._fetch(missing, scope, fetch)
                    values = self._cached(items, scope)
        return values

    def _cache_key(self, key: Key, scope: Hashable) -> Hashable:
        return key if scope is None else (scope, key)

    def _cached(self, items: Sequence[tuple[Key, Any]], scope: Hashable) -> list[Any]:
        oldest = self.clock() - SHARE_FOR
        values = []
        for key, _pk in items:
            entry = self._cache.get(self._cache_key(key, scope))
            values.append(_MISSING if entry is None or entry[0] < oldest else entry[1])
        return values

    async def _fetch(
        self,
        items: Sequence[tuple[Key, Any]],
        scope: Hashable,
        fetch: Callable[[list[Any]], dict[Any, Any]],
    ) -> None:
        pks = sorted({pk for _key, pk in items}, key=repr)
        found = await run_sync(call_with_fresh_connections, fetch, pks)
        stats.permission_queries += 1
        now = self.clock()
        cache = self._cache
        if len(cache) > _SWEEP_ABOVE:
            oldest = now - SHARE_FOR
            for stale in [k for k, (at, _v) in cache.items() if at < oldest]:
                del cache[stale]
        for key, pk in items:
            cache[self._cache_key(key, scope)] = (now, found.get(pk))

    def _rule_rows(self, view: FeedView, pks: list[Any]) -> dict[Any, dict[str, Any]]:
        binding = self.binding
        rows = self._in(view, binding.model._default_manager.all(), pks)
        return {
            pk_value(row["pk"]): row for row in rows.values("pk", *binding.rule_fields)
        }

    def _readable_pks(
        self, user: Any, view: FeedView, pks: list[Any]
    ) -> dict[Any, bool]:
        readable = self._in(view, self.binding.readable(user), pks)
        return {pk_value(pk): True for pk in readable.values_list("pk", flat=True)}

    @staticmethod
    def _in(
        view: FeedView, queryset: models.QuerySet[Any], pks: list[Any]
    ) -> models.QuerySet[Any]:
        queryset = queryset.filter(pk__in=pks)
        return queryset if view.filter is None else view.apply(queryset)


_checkers: dict[str, AccessChecker] = {}


def checker_for(binding: Binding) -> AccessChecker:
    """Return the process's checker of ``binding``."""
    checker = _checkers.get(binding.name)
    if checker is None or checker.binding is not binding:
        checker = _checkers[binding.name] = AccessChecker(binding)
    return checker
