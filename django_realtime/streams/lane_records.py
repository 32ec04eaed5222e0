"""The records a :class:`~django_realtime.streams.lane.StreamLane` keeps.

Plain records with no behaviour: a subscription's state, and the control
entries that wait in the lane's queue beside publications.
"""

from __future__ import annotations

from dataclasses import dataclass

from django_realtime.streams.cursor import Cursor
from django_realtime.streams.filters import FilteredDelivery
from django_realtime.streams.positions import Position, Publication

__all__ = ["CatchUpRead", "LaneSubscription", "Resync", "Start", "Stop"]


@dataclass(slots=True, eq=False)
class LaneSubscription:
    """One stream a connection subscribed to; ``cursor`` once it started.

    ``waiting``: a catch-up of the stream waits for the replay budget; its
    publications are skipped meanwhile (the catch-up's read has them).
    ``delivery``: the subscription's filter, if it has one.
    """

    stream: str
    cursor: Cursor | None = None
    waiting: bool = False
    delivery: FilteredDelivery | None = None


@dataclass(slots=True, eq=False)
class Start:
    """A subscribe, answered when the lane reaches it."""

    frame_id: int
    subscription: LaneSubscription
    since: Position | None


@dataclass(slots=True, eq=False)
class Stop:
    """An unsubscribe, answered when the lane reaches it."""

    frame_id: int
    stream: str


@dataclass(slots=True, eq=False)
class Resync:
    """A catch-up of ``stream``: announcements may have been lost."""

    stream: str


@dataclass(slots=True, eq=False)
class CatchUpRead:
    """A history read after a gap, and the announcement that showed it."""

    subscription: LaneSubscription
    announced: Publication | None
