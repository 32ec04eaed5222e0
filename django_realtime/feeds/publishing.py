"""Publish the changes of bound models: signals, bulk paths, rechecks.

Every change goes out with :func:`django_realtime.streams.publish`, so it
follows its rules: inside ``transaction.atomic()`` it is published at the
commit and never for a rolled-back change; inside a consumer handler, when
the handler returns; otherwise at once. Changes of one row are published
in the order they were made (commit order).

Covered without anything to do: ``save()``, ``delete()``, the admin, and
``QuerySet.delete()`` (Django sends its signals for each row once anyone
listens). The paths that send no signals, ``QuerySet.update()``,
``bulk_create()`` and ``bulk_update()``, publish when the model's manager
is built on :class:`FeedQuerySet`; the check ``django_realtime.feeds.W001``
warns of a bound model whose default manager is not. Code that changes
rows any other way (raw SQL, a plain queryset) calls
:func:`publish_changes` afterwards.

A serialiser that raises for one row is logged with its traceback, counted
in :data:`stats`, and that row's event is skipped; nothing else is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import models, router, transaction
from django.db.models.signals import post_delete, post_save, pre_save

from django_realtime.feeds.binding import (
    Binding,
    add,
    bindings_for,
    pk_value,
    registered,
)
from django_realtime.feeds.events import (
    CREATE,
    DELETE,
    UPDATE,
    change_event,
    recheck_event,
)
from django_realtime.streams import publish

__all__ = [
    "FeedQuerySet",
    "FeedStats",
    "publish_changes",
    "publish_immediately",
    "publish_instance",
    "recheck",
    "register",
    "serialize_rows",
    "stats",
]

logger = logging.getLogger("django_realtime.feeds")

_B = TypeVar("_B", bound=type[Binding])
_M = TypeVar("_M", bound=models.Model)

_immediately: ContextVar[bool] = ContextVar("feeds_immediately", default=False)
# Set while QuerySet.bulk_update() runs: it calls update(), and publishes itself.
_quiet: ContextVar[bool] = ContextVar("feeds_quiet", default=False)


@dataclass
class FeedStats:
    """Counters of the process's feeds."""

    #: Rows whose serialiser raised: their event was skipped.
    serialize_errors: int = 0
    #: Queries made to check permissions on delivery and replay.
    permission_queries: int = 0
    #: Events delivered to subscribers (enter, update, leave).
    delivered: int = 0
    #: Events withheld from subscribers who may not read the row.
    withheld: int = 0


#: The process's feed counters.
stats = FeedStats()


def register(binding: _B) -> _B:
    """Register the binding class ``binding``; usable as a class decorator.

    Connects its model's ``pre_save``, ``post_save`` and ``post_delete``
    signals. With a :attr:`~.binding.Binding.version_field`, each
    ``save()`` of an existing row adds one to it, in the row's ``UPDATE``
    (``F(field) + 1``; in an ``UPDATE`` of its own when ``update_fields``
    leaves it out), and reads it back before publishing.

    Raises:
        ValueError: the binding has no model, or its name is taken by
            another binding.
    """
    instance = add(binding)
    model = instance.model
    uid = f"django_realtime.feeds:{model._meta.label_lower}"
    pre_save.connect(_saving, sender=model, dispatch_uid=uid)
    post_save.connect(_saved, sender=model, dispatch_uid=uid)
    post_delete.connect(_deleted, sender=model, dispatch_uid=uid)
    return binding


@contextlib.contextmanager
def publish_immediately() -> Iterator[None]:
    """Publish the changes made inside the block at once, even in a handler.

    For code that commits each change itself (the async ORM autocommits)
    and whose subscribers must hear of each before the handler returns, a
    background worker reporting progress, say.
    """
    token = _immediately.set(True)
    try:
        yield
    finally:
        _immediately.reset(token)


def _publish(binding: Binding, data: dict[str, Any], using: str | None) -> None:
    publish(binding.stream, data, using=using, immediately=_immediately.get())


def _row(binding: Binding, instance: models.Model) -> dict[str, Any] | None:
    try:
        return binding.serialize(instance)
    except Exception:
        stats.serialize_errors += 1
        logger.exception(
            "Could not serialise %s %r for the feed %s: its event is skipped.",
            binding.model._meta.label,
            instance.pk,
            binding.name,
        )
        return None


def serialize_rows(
    binding: Binding, instances: Iterable[models.Model]
) -> list[dict[str, Any]]:
    """Return the rows of ``instances``, skipping (and logging) those that fail."""
    return [row for row in (_row(binding, i) for i in instances) if row is not None]


def publish_instance(
    instance: models.Model,
    op: str,
    *,
    changed: Sequence[str] | None = None,
    using: str | None = None,
) -> None:
    """Publish that ``instance`` was created, updated or deleted (``op``).

    On every feed of its model.
    """
    for binding in bindings_for(type(instance)):
        pk = pk_value(instance.pk)
        if op == DELETE:
            _publish(binding, change_event(DELETE, pk, None, None), using)
            continue
        row = _row(binding, instance)
        if row is not None:
            names = None if changed is None else sorted(changed)
            _publish(binding, change_event(op, pk, row, names), using)


def publish_changes(
    model: type[models.Model],
    pks: Iterable[Any],
    op: str = UPDATE,
    *,
    changed: Sequence[str] | None = None,
    using: str | None = None,
) -> None:
    """Publish that the rows ``pks`` of ``model`` were created or updated (``op``).

    Reads the rows as they are now (those gone are published as deleted)
    and publishes each on every feed of the model, by the rules of
    :func:`~django_realtime.streams.publish`. Call it after a change that
    sends no signal, in the same transaction.
    """
    if not bindings_for(model):
        return
    keys = list(pks)
    db = using or router.db_for_write(model)
    found = {
        obj.pk: obj for obj in model._default_manager.db_manager(db).filter(pk__in=keys)
    }
    for pk in keys:
        instance = found.get(pk)
        if instance is None:
            for binding in bindings_for(model):
                _publish(binding, change_event(DELETE, pk_value(pk), None, None), using)
        else:
            publish_instance(instance, op, changed=changed, using=using)


def recheck(user: Any, *, using: str | None = None) -> None:
    """Have every feed check ``user``'s rows again: their permissions changed.

    Call it when a user gains or loses access other than by a change of the
    rows (a group, a permission, ``is_staff``): each of their subscriptions
    gets ``enter`` and ``leave`` events for the difference, with the
    user as they are in the database then. Published by the rules of
    :func:`~django_realtime.streams.publish` (at the commit, inside a
    transaction).
    """
    for binding in registered():
        _publish(binding, recheck_event(user.pk), using)


def _saving(
    sender: type[models.Model],
    instance: models.Model,
    raw: bool = False,
    update_fields: Iterable[str] | None = None,
    **kwargs: Any,
) -> None:
    if raw or instance._state.adding:
        return
    for name in _version_fields(sender):
        if update_fields is None or name in update_fields:
            setattr(instance, name, models.F(name) + 1)


def _settle_versions(
    model: type[models.Model],
    instance: models.Model,
    using: str | None,
    update_fields: Iterable[str] | None,
) -> list[str]:
    """Add one to the version fields a save() left out; read them back."""
    names = _version_fields(model)
    if not names:
        return []
    left_out = [
        n for n in names if update_fields is not None and n not in update_fields
    ]
    if left_out:
        rows: models.QuerySet[Any] = models.QuerySet(model=model, using=using)
        rows = rows.filter(pk=instance.pk)
        rows.update(**{name: models.F(name) + 1 for name in left_out})
    instance.refresh_from_db(using=using, fields=names)
    return left_out


def _saved(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool = False,
    using: str | None = None,
    update_fields: Iterable[str] | None = None,
    **kwargs: Any,
) -> None:
    if raw:
        return  # loaddata: no feed hears of fixtures
    left_out = (
        [] if created else _settle_versions(sender, instance, using, update_fields)
    )
    changed = None if update_fields is None else sorted({*update_fields, *left_out})
    publish_instance(
        instance, CREATE if created else UPDATE, changed=changed, using=using
    )


def _deleted(
    sender: type[models.Model],
    instance: models.Model,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    publish_instance(instance, DELETE, using=using)


def _version_fields(model: type[models.Model]) -> list[str]:
    """Return the version fields the bindings of ``model`` declare."""
    names = {b.version_field for b in bindings_for(model) if b.version_field}
    return sorted(names)


class FeedQuerySet(models.QuerySet[_M]):
    """A queryset whose bulk paths publish to the model's feeds.

    Build the bound model's manager on it (``objects =
    FeedQuerySet.as_manager()``, or a subclass). ``update()`` reads the
    primary keys of the rows it matches, then updates those rows (if they
    still match) and publishes each; ``bulk_create()`` and
    ``bulk_update()`` publish the rows they wrote (``bulk_create()`` only
    where the database returns the new primary keys: PostgreSQL, SQLite).
    Each runs in a transaction and publishes at its commit. Their async
    twins (``aupdate()``...) go through them.
    """

    def update(self, **kwargs: Any) -> int:
        """Update the matching rows with ``kwargs``; publish each.

        A binding's :attr:`~.binding.Binding.version_field` that ``kwargs``
        does not set is added one to (``F(field) + 1``).

        The keys of the matching rows are read first (outside any
        transaction but the caller's), then one ``UPDATE`` with the
        queryset's conditions and those keys writes them, in a transaction
        the rows are read again and published in: a row that starts to
        match between the two is left alone, as if the update had run
        just before.
        """
        if _quiet.get() or not bindings_for(self.model):
            return super().update(**kwargs)
        for name in _version_fields(self.model):
            kwargs.setdefault(name, models.F(name) + 1)
        db = self.db
        pks = list(self.values_list("pk", flat=True))
        if not pks:
            return 0
        with transaction.atomic(using=db):
            count = super(FeedQuerySet, self.filter(pk__in=pks)).update(**kwargs)
            if count:
                publish_changes(self.model, pks, changed=list(kwargs), using=db)
        return count

    def bulk_create(self, objs: Iterable[_M], *args: Any, **kwargs: Any) -> list[_M]:
        """Create ``objs`` as ``QuerySet.bulk_create()`` does; publish each."""
        if not bindings_for(self.model):
            return super().bulk_create(objs, *args, **kwargs)
        with transaction.atomic(using=self.db):
            created = super().bulk_create(objs, *args, **kwargs)
            for obj in created:
                if obj.pk is not None:
                    publish_instance(obj, CREATE, using=self.db)
        return created

    def bulk_update(
        self, objs: Iterable[_M], fields: Iterable[str], batch_size: int | None = None
    ) -> int:
        """Update ``fields`` of ``objs`` as ``QuerySet.bulk_update()``; publish each.

        A binding's :attr:`~.binding.Binding.version_field` not in
        ``fields`` is added one to on each object, and written.
        """
        if not bindings_for(self.model):
            return super().bulk_update(objs, fields, batch_size)
        rows, names = list(objs), list(fields)
        for name in _version_fields(self.model):
            if name not in names:
                names.append(name)
                for obj in rows:
                    setattr(obj, name, getattr(obj, name) + 1)
        with transaction.atomic(using=self.db):
            token = _quiet.set(True)
            try:
                count = super().bulk_update(rows, names, batch_size)
            finally:
                _quiet.reset(token)
            for obj in rows:
                publish_instance(obj, UPDATE, changed=names, using=self.db)
        return count
