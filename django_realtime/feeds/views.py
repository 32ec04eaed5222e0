"""Views of a feed: all its rows, one row, or a named query's rows.

A subscription to a feed's stream follows one *view* of it, chosen by the
``feed.snapshot`` (and ``feed.resume``) request:

- ``{"feed": "jobs.job"}``: every row the user may read;
- ``{"feed": "jobs.job", "pk": 7}``: row 7 alone, if the user may read it;
- ``{"feed": "jobs.job", "query": "running", "params": {...}}``: the rows
  of the binding's named query (:attr:`~.binding.Binding.queries`) that
  the user may read.

Views are not streams of their own: every view of a feed follows the
feed's one stream, and each subscription's filter withholds what is
outside its view (a row entering or leaving the view is sent ``enter`` or
``leave``, as for permissions). A change is published once, whatever the
number of views followed.

Pure, but for :meth:`FeedView.apply` (which builds a queryset, lazily).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from django_realtime.exceptions import RequestError

__all__ = [
    "MAX_PARAMETER_LENGTH",
    "WHOLE",
    "FeedView",
    "Query",
    "query",
    "view_of_request",
]

#: Longest string a query parameter may be.
MAX_PARAMETER_LENGTH = 200

#: A query's filter: the rows of ``queryset`` in the query, given ``params``.
QueryFilter = Callable[[models.QuerySet[Any], Mapping[str, Any]], models.QuerySet[Any]]

_TYPES: dict[type, str] = {int: "an integer", str: "a string", bool: "a boolean"}


@dataclass(frozen=True)
class Query:
    """A named query of a binding, and the parameters it takes.

    Attributes:
        filter: Return the rows of the queryset given that are in the query,
            with the validated parameters (``lambda qs, params:
            qs.filter(status="running")``).
        params: Each parameter's name and type (``int``, ``str`` or
            ``bool``); every one is required.
    """

    filter: QueryFilter
    params: Mapping[str, type] = field(default_factory=dict)

    def validate(self, name: str, params: Any) -> tuple[tuple[str, Any], ...]:
        """Return ``params`` checked against :attr:`params`, as sorted pairs.

        Raises:
            RequestError: ``bad_parameters``, naming what was expected.
        """
        if params is None:
            params = {}
        expected = ", ".join(
            f"{key!r}: {_TYPES.get(kind, kind.__name__)}"
            for key, kind in sorted(self.params.items())
        )
        if type(params) is not dict or set(params) != set(self.params):
            raise RequestError(
                "bad_parameters",
                f"Expected the query {name!r} to get the params {{{expected}}}, "
                f"got {str(params)[:200]}.",
            )
        for key, value in params.items():
            kind = self.params[key]
            if type(value) is not kind or (
                isinstance(value, str) and len(value) > MAX_PARAMETER_LENGTH
            ):
                raise RequestError(
                    "bad_parameters",
                    f"Expected the parameter {key!r} of the query {name!r} to be "
                    f"{_TYPES.get(kind, kind.__name__)}"
                    f"{' of at most 200 characters' if kind is str else ''}, "
                    f"got {str(value)[:200]!r}.",
                )
        return tuple(sorted(params.items()))


def query(filter: QueryFilter, **params: type) -> Query:
    """Return a named query: ``queries = {"mine": query(f, owner=int)}``.

    Raises:
        ValueError: a parameter's type is not ``int``, ``str`` or ``bool``.
    """
    for key, kind in params.items():
        if kind not in _TYPES:
            raise ValueError(
                f"Expected the type of the parameter {key!r} to be int, str or "
                f"bool, got {kind!r}."
            )
    return Query(filter, params)


@dataclass(frozen=True)
class FeedView:
    """What one subscription follows of a feed.

    Attributes:
        pk: The one row followed (``None``: not a row's view).
        query: The name of the query followed (``None``: not a query's view).
        params: The query's validated parameters, as sorted pairs.
        filter: The query's filter (``None`` without a query).
    """

    pk: Any = None
    query: str | None = None
    params: tuple[tuple[str, Any], ...] = ()
    filter: QueryFilter | None = field(default=None, compare=False)

    @property
    def key(self) -> Hashable:
        """Return a key equal for subscriptions that follow the same rows."""
        return (self.pk, self.query, self.params)

    def apply(self, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        """Return the rows of ``queryset`` in this view."""
        if self.pk is not None:
            queryset = queryset.filter(pk=self.pk)
        if self.filter is not None:
            queryset = self.filter(queryset, dict(self.params))
        return queryset

    def describe(self) -> dict[str, Any]:
        """Return the view as requests name it (without the feed)."""
        if self.pk is not None:
            return {"pk": self.pk}
        if self.query is not None:
            return {"query": self.query, "params": dict(self.params)}
        return {}


#: Every row the user may read.
WHOLE = FeedView()


def view_of_request(
    feed: str, queries: Mapping[str, Query | QueryFilter], data: Mapping[str, Any]
) -> FeedView:
    """Return the view a request's ``pk``, or ``query`` and ``params``, names.

    Raises:
        RequestError: ``bad_parameters`` (a malformed key or parameters, or
            both ``pk`` and ``query``), ``unknown_query``.
    """
    pk, name = data.get("pk"), data.get("query")
    if pk is not None and name is not None:
        raise RequestError(
            "bad_parameters",
            'Expected "pk" or "query", not both: a view is one row or one query.',
        )
    if pk is not None:
        if type(pk) not in (int, str) or len(str(pk)) > MAX_PARAMETER_LENGTH:
            raise RequestError(
                "bad_parameters",
                f'Expected "pk" to be a row key (an integer or a string), '
                f"got {str(pk)[:200]}.",
            )
        return FeedView(pk=pk)
    if name is None:
        if data.get("params") is not None:
            raise RequestError(
                "bad_parameters", 'Expected "params" only with a "query".'
            )
        return WHOLE
    if type(name) is not str or name not in queries:
        known = ", ".join(sorted(queries)) or "none"
        raise RequestError(
            "unknown_query",
            f"The feed {feed!r} has no query named {str(name)[:200]!r} "
            f"(its queries: {known}).",
        )
    declared = queries[name]
    if not isinstance(declared, Query):
        declared = Query(declared)
    params = declared.validate(name, data.get("params"))
    return FeedView(query=name, params=params, filter=declared.filter)
