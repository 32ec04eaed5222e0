"""What a feed publishes, and what each subscriber is sent of it.

Pure: no database, no event loop.

A feed's stream carries one publication per change, the same for everyone
(:func:`change_event`)::

    {"op": "update", "pk": 7, "row": {...}, "changed": ["status"]}

``op`` is ``create``, ``update`` or ``delete`` (``row`` is ``null``), or
``recheck`` (``{"op": "recheck", "user": 3}``: user 3's permissions
changed, see :func:`~django_realtime.feeds.publishing.recheck`).
``changed`` lists the fields an update changed, or is ``null`` when that is
not known (a ``save()`` without ``update_fields``).

Each subscriber holds a set of rows (its snapshot, then what it was sent).
:func:`view_of` turns a change into what that subscriber gets, given
whether it may read the row now: ``{"type": "enter" | "update" | "leave",
"op": ..., "pk": ..., "row": ...}``, or nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CREATE",
    "DELETE",
    "ENTER",
    "LEAVE",
    "RECHECK",
    "UPDATE",
    "Change",
    "change_event",
    "parse_event",
    "recheck_event",
    "view_of",
]

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
RECHECK = "recheck"
#: A row the subscriber did not hold and may now read: created, or moved
#: into what it may read.
ENTER = "enter"
#: A row the subscriber held and may no longer read: deleted, or moved out.
LEAVE = "leave"

_OPS = frozenset({CREATE, UPDATE, DELETE, RECHECK})


def change_event(
    op: str, pk: Any, row: dict[str, Any] | None, changed: list[str] | None
) -> dict[str, Any]:
    """Return the publication of a change of row ``pk``."""
    return {"op": op, "pk": pk, "row": row, "changed": changed}


def recheck_event(user_pk: Any) -> dict[str, Any]:
    """Return the publication that has user ``user_pk``'s subscribers checked again."""
    return {"op": RECHECK, "user": user_pk}


@dataclass(frozen=True, slots=True)
class Change:
    """A feed's publication, decoded."""

    op: str
    pk: Any = None
    row: dict[str, Any] | None = None
    changed: list[str] | None = None
    user: Any = None


def parse_event(data: str) -> Change | None:
    """Return the change a feed publication's payload holds; ``None``: not one."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    if type(value) is not dict or value.get("op") not in _OPS:
        return None
    if value["op"] == RECHECK:
        return Change(RECHECK, user=value.get("user"))
    pk = value.get("pk")
    if type(pk) not in (int, str):
        return None
    row = value.get("row")
    changed = value.get("changed")
    return Change(
        value["op"],
        pk,
        row if type(row) is dict else None,
        changed if type(changed) is list else None,
    )


def view_of(change: Change, readable: bool, held: set[Any]) -> dict[str, Any] | None:
    """Return what a subscriber holding ``held`` is sent of ``change``; update ``held``.

    ``readable``: whether the subscriber may read the row now (``False``
    for a deleted row). ``None``: the subscriber is sent nothing.
    """
    pk = change.pk
    if change.op == DELETE or not readable or change.row is None:
        if pk not in held:
            return None
        held.discard(pk)
        return {"type": LEAVE, "op": change.op, "pk": pk}
    kind = UPDATE if pk in held else ENTER
    held.add(pk)
    view: dict[str, Any] = {"type": kind, "op": change.op, "pk": pk, "row": change.row}
    if kind == UPDATE:
        view["changed"] = change.changed
    return view
