"""Bindings: which model a feed publishes, which fields, and who reads which rows.

A project declares a :class:`Binding` subclass per feed and registers it
with :func:`~django_realtime.feeds.publishing.register` (as a class
decorator, usually in the app's ``bindings.py``, imported from its
``AppConfig.ready()``). Registering
connects the model's ``post_save`` and ``post_delete`` signals, so every
``save()`` and ``delete()`` (the admin's included, and ``QuerySet.delete()``,
which sends them) is published on the binding's stream,
``feed.<name>``; the bulk paths that send no signals publish through
:class:`~django_realtime.feeds.publishing.FeedQuerySet` or
:func:`~django_realtime.feeds.publishing.publish_changes`.

Who may read a row is said in one of two ways:

- a **row rule**: :attr:`Binding.rule_fields` and :meth:`Binding.can_read`,
  a check of the row's current values in Python. Checking a batch of
  publications costs one query for the whole process, however many
  subscribers there are.
- a **queryset per user**: :meth:`Binding.readable` alone. Checking a batch
  costs one query per distinct :meth:`Binding.audience` among the
  subscribers (users whose audience is equal share the answer).

:meth:`Binding.readable` also gives each subscriber's snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils.module_loading import autodiscover_modules

from django_realtime.feeds.views import Query, QueryFilter

__all__ = [
    "Binding",
    "add",
    "autodiscover",
    "bindings_for",
    "get_binding",
    "pk_value",
    "registered",
    "unregister",
]

logger = logging.getLogger("django_realtime.feeds")

#: The prefix of every feed's stream name.
STREAM_PREFIX = "feed."

_by_name: dict[str, Binding] = {}
_by_model: dict[type[models.Model], list[Binding]] = {}


def pk_value(pk: Any) -> Any:
    """Return a primary key as feeds carry it in JSON: an integer, or a string."""
    return pk if type(pk) is int else str(pk)


class Binding:
    """Publish a model's rows on a feed, and say who may read which.

    Attributes:
        model: The model published.
        fields: The fields each row carries (``None``: every concrete field,
            by attribute name: ``owner_id`` for a foreign key ``owner``).
        name: The feed's name (default: the model's label, lower case,
            ``"jobs.job"``); its stream is ``feed.<name>``.
        version_field: A field that grows with every change of a row (such
            as a counter the row's updates add one to): clients ignore an
            event older than the row they hold, so a change is applied once
            even when both the snapshot and the feed carry it.
        rule_fields: The fields :meth:`can_read` looks at; empty: there is
            no row rule, and :meth:`readable` decides on delivery too.
        max_snapshot: Most rows a snapshot returns (the first by the
            queryset's ordering).
        queries: The named queries a subscription may follow instead of the
            whole feed, by name: a :class:`~.views.Query` (made with
            :func:`~.views.query`, with typed parameters), or a function
            ``(queryset, params) -> queryset`` that takes none.
    """

    model: ClassVar[type[models.Model]]
    fields: ClassVar[Sequence[str] | None] = None
    name: ClassVar[str] = ""
    version_field: ClassVar[str | None] = None
    rule_fields: ClassVar[Sequence[str]] = ()
    max_snapshot: ClassVar[int] = 1000
    queries: ClassVar[Mapping[str, Query | QueryFilter]] = {}

    @property
    def stream(self) -> str:
        """Return the name of this feed's stream."""
        return STREAM_PREFIX + self.name

    def readable(self, user: Any) -> models.QuerySet[Any]:
        """Return the rows ``user`` may read; override (the default: none)."""
        return self.model._default_manager.none()

    def can_read(self, user: Any, row: Mapping[str, Any]) -> bool:
        """Return whether ``user`` may read the row whose current values are ``row``.

        ``row`` holds ``pk`` and :attr:`rule_fields`. Override together with
        :attr:`rule_fields`; it must agree with :meth:`readable`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} sets rule_fields: define can_read(user, row)."
        )

    def audience(self, user: Any) -> Hashable:
        """Return a key equal for users who may read the same rows.

        Used without a row rule: users with the same audience share one
        query per batch. The default is the user's primary key (staff-only
        feeds may return ``"staff"``, say).
        """
        return getattr(user, "pk", None)

    def serialize(self, instance: models.Model) -> dict[str, Any]:
        """Return what a row carries to clients: :attr:`fields`, JSON-ready.

        Override to shape rows; an exception here skips that row's event
        (logged and counted in :data:`~django_realtime.feeds.stats`).
        """
        opts = instance._meta
        names = self.fields
        if names is None:
            names = [field.attname for field in opts.concrete_fields]
        encoder = DjangoJSONEncoder()
        row: dict[str, Any] = {}
        for name in names:
            value = getattr(instance, name)
            if value is not None and not isinstance(
                value, (str, int, float, bool, list, dict)
            ):
                value = encoder.default(value)
            row[name] = value
        row["pk"] = pk_value(instance.pk)
        return row


def add(binding: type[Binding]) -> Binding:
    """Add the binding class ``binding`` to the registry; return its instance.

    Raises:
        ValueError: the binding has no model, or its name is taken by
            another binding.
    """
    model = getattr(binding, "model", None)
    if not (isinstance(model, type) and issubclass(model, models.Model)):
        raise ValueError(
            f"Expected {binding.__name__}.model to be a model class, got {model!r}."
        )
    if not binding.name:
        binding.name = model._meta.label_lower
    existing = _by_name.get(binding.name)
    if existing is not None and type(existing) is not binding:
        raise ValueError(
            f"A binding named {binding.name!r} is registered already "
            f"({type(existing).__name__}): give {binding.__name__} another name."
        )
    instance = binding()
    _by_name[binding.name] = instance
    bound = _by_model.setdefault(model, [])
    bound[:] = [b for b in bound if b.name != binding.name] + [instance]
    return instance


def unregister(name: str) -> None:
    """Forget the binding ``name`` (tests); its model's signals stay connected."""
    binding = _by_name.pop(name, None)
    if binding is not None:
        _by_model[binding.model] = [
            b for b in _by_model.get(binding.model, []) if b is not binding
        ]


def get_binding(name: str) -> Binding | None:
    """Return the binding named ``name``, or ``None``."""
    return _by_name.get(name)


def bindings_for(model: type[models.Model]) -> list[Binding]:
    """Return the bindings of ``model`` (an empty list: it is not bound)."""
    return _by_model.get(model, [])


def registered() -> list[Binding]:
    """Return every registered binding."""
    return list(_by_name.values())


def autodiscover() -> None:
    """Import the ``bindings`` module of every installed app that has one."""
    autodiscover_modules("bindings")
