"""Where one subscription is in its stream, and what to send next.

A subscriber's publications come from two sources: the live announcements of
new publications, and reads of the history. Either may repeat what the other
gave, and announcements may be lost. A :class:`Cursor` merges them by
position, so the client gets each publication once, in offset order, and
hears about anything that cannot be replayed:

- :meth:`Cursor.start` begins at a history read (the replay, if any);
- :meth:`Cursor.verdict` sorts a live announcement: the next one
  (:data:`DELIVER`), one already sent (:data:`DUPLICATE`), or one past a gap
  (:data:`GAP`: read the history from :attr:`Cursor.position`, then
  :meth:`Cursor.catch_up`, then :meth:`Cursor.settle` the announcement).

Pure: the caller does the reads and the sends.
"""

from __future__ import annotations

from dataclasses import dataclass

from django_realtime.streams.positions import (
    OUTSIDE_WINDOW,
    History,
    Position,
    Publication,
)

__all__ = ["DELIVER", "DUPLICATE", "GAP", "CatchUp", "Cursor", "Start"]

#: The announcement is the next publication: send it.
DELIVER = "deliver"
#: The announcement was sent already (by a replay): drop it.
DUPLICATE = "duplicate"
#: Publications before the announcement are missing: read the history.
GAP = "gap"


@dataclass(frozen=True, slots=True)
class Start:
    """How a subscription starts: what the ``subscribed`` frame says, and the replay."""

    position: Position
    recovered: bool
    reason: str | None
    replay: tuple[Publication, ...]


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a history read after a gap gives: publications, or a loss."""

    publications: tuple[Publication, ...]
    lost: str | None = None
    position: Position | None = None


class Cursor:
    """The position of the last publication a subscriber was sent."""

    __slots__ = ("epoch", "offset")

    def __init__(self, epoch: str, offset: int) -> None:
        self.epoch = epoch
        self.offset = offset

    @property
    def position(self) -> Position:
        """Return the position of the last publication sent."""
        return Position(self.epoch, self.offset)

    @classmethod
    def start(cls, history: History, since: Position | None) -> tuple[Cursor, Start]:
        """Begin at ``history``, read from ``since`` (``None``: from now on)."""
        cursor = cls(history.epoch, history.offset)
        if since is None:
            return cursor, Start(history.position, False, None, ())
        if history.reason is not None:
            return cursor, Start(history.position, False, history.reason, ())
        return cursor, Start(history.position, True, None, history.publications)

    def verdict(self, publication: Publication) -> str:
        """Sort an announcement: :data:`DELIVER`, :data:`DUPLICATE` or :data:`GAP`."""
        if publication.epoch == self.epoch:
            if publication.offset == self.offset + 1:
                return DELIVER
            if publication.offset <= self.offset:
                return DUPLICATE
        return GAP

    def advance(self, publication: Publication) -> None:
        """Record that ``publication`` (a :data:`DELIVER`) was sent."""
        self.offset = publication.offset

    def catch_up(self, history: History) -> CatchUp:
        """Take a history read from :attr:`position`; return what to send.

        The cursor moves to the stream's newest position either way: on a
        loss, the subscriber is told and continues from there.
        """
        publications = tuple(
            p
            for p in history.publications
            if p.epoch != self.epoch or p.offset > self.offset
        )
        self.epoch, self.offset = history.epoch, history.offset
        if history.reason is not None:
            return CatchUp((), history.reason, history.position)
        return CatchUp(publications)

    def settle(self, publication: Publication) -> CatchUp:
        """Place the announcement that showed a gap, after :meth:`catch_up`.

        Normally the history read included it and there is nothing to do.
        If it is still ahead (what came before it has already left the
        window), the subscriber is told of the loss and gets it.
        """
        verdict = self.verdict(publication)
        if verdict == DUPLICATE:
            return CatchUp(())
        if verdict == DELIVER:
            self.advance(publication)
            return CatchUp((publication,))
        self.epoch, self.offset = publication.epoch, publication.offset - 1
        lost = CatchUp((publication,), OUTSIDE_WINDOW, self.position)
        self.advance(publication)
        return lost
