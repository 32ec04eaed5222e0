"""What a stream's clients should have received, and what each one did.

Pure bookkeeping for ``benchmarks.stress.stream_faults``: a :class:`Ledger` holds
every position the store gave out for one stream, in order; a
:class:`Track` checks one client's view of that stream as frames arrive
(a publication is the next one, a duplicate, or past a silent gap; a
``lost`` frame or an unrecovered ``subscribed`` is a signalled loss) and,
at the end, compares what the client holds with the ledger.
"""

from __future__ import annotations

import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django_realtime.streams.positions import Position

__all__ = ["Ledger", "Track"]


class Ledger:
    """Every publication of one stream, in the order the store assigned them."""

    def __init__(self) -> None:
        self.published: list[tuple[str, int, int]] = []
        self._rank: dict[tuple[str, int], int] = {}

    def add(self, epoch: str, offset: int, n: int) -> None:
        """Record that ``epoch:offset`` holds the payload numbered ``n``."""
        self._rank[epoch, offset] = len(self.published)
        self.published.append((epoch, offset, n))

    def rank(self, position: Position) -> float | None:
        """Return where ``position`` is in the publishing order (None: unknown).

        Offset 0 of an epoch is just before its first publication.
        """
        rank = self._rank.get((position.epoch, position.offset))
        if rank is None and position.offset == 0:
            first = self._rank.get((position.epoch, 1))
            return None if first is None else first - 0.5
        return rank

    def reached(self, position: Position | None, target: Position | None) -> bool:
        """Return whether a client at ``position`` holds everything to ``target``."""
        if position is None:
            return False
        if target is None:
            return True
        at, goal = self.rank(position), self.rank(target)
        return goal is None or (at is not None and at >= goal)


@dataclass
class Track:
    """What one client received of one stream, checked as it arrives.

    Attributes:
        first: The stream's position when the client first subscribed.
        got: Per epoch, the payload ``n`` received at each offset (-1: none).
        gaps: Publications skipped with no signal, seen as they arrived.
        signalled: Each signalled loss as the position the client was at
            and the position it was told to continue from: what the store
            published in between is lost, and the client knows it.
        events: The last subscribes, losses and connections, to explain a
            failure.
    """

    stream: str
    history: int
    first: Position | None = None
    epoch: str | None = None
    offset: int = 0
    got: dict[str, array.array[int]] = field(default_factory=dict)
    duplicates: int = 0
    gaps: int = 0
    signalled: list[tuple[Position | None, Position]] = field(default_factory=list)
    losses: Counter[str] = field(default_factory=Counter)
    unjustified: int = 0
    lost_frames: int = 0
    events: list[str] = field(default_factory=list)
    missing: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def position(self) -> Position | None:
        """Return the position to resume from (None before the first subscribe)."""
        return None if self.epoch is None else Position(self.epoch, self.offset)

    def note(self, event: str) -> None:
        """Keep ``event`` among the last few, to explain a failure."""
        self.events.append(event)
        del self.events[:-12]

    def subscribed(self, frame: dict[str, Any], since: Position | None) -> str:
        """Take a ``subscribed`` frame; return "first", "recovered" or the reason."""
        epoch, offset = frame["epoch"], frame["offset"]
        self.note(f"at {self.epoch}:{self.offset} got {frame}")
        if since is None:
            self.first = self.first or Position(epoch, offset)
            self.epoch, self.offset = epoch, offset
            return "first"
        if frame["recovered"]:
            if epoch != since.epoch or offset - since.offset != frame["replayed"]:
                self.errors.append(f"recovered from {since} but got {frame}")
            return "recovered"
        reason = str(frame.get("reason"))
        self._signal(reason, Position(epoch, offset))
        # The client resumes from positions the server gave it: the history
        # it needs may be gone, but only by leaving the window or the epoch.
        if reason == "outside_window":
            justified = epoch == since.epoch and offset - since.offset > self.history
        else:
            justified = reason == "epoch_changed" and epoch != since.epoch
        if not justified:
            self.unjustified += 1
        return reason

    def lost(self, frame: dict[str, Any]) -> None:
        """Take a ``lost`` frame: what comes next follows its position."""
        self.lost_frames += 1
        self.note(f"at {self.epoch}:{self.offset} got {frame}")
        self._signal(str(frame["reason"]), Position(frame["epoch"], frame["offset"]))

    def _signal(self, reason: str, to: Position) -> None:
        self.losses[reason] += 1
        self.signalled.append((self.position, to))
        self.epoch, self.offset = to.epoch, to.offset

    def publication(self, epoch: str, offset: int, n: int) -> None:
        """Take a publication: the next one, a duplicate, or past a silent gap."""
        if self.epoch is None:
            self.errors.append(f"publication {epoch}:{offset} before subscribed")
            return
        if epoch == self.epoch and offset <= self.offset:
            self.duplicates += 1
            return
        if epoch != self.epoch or offset != self.offset + 1:
            self.note(f"at {self.epoch}:{self.offset} got {epoch}:{offset}: a gap")
            self.gaps += offset - self.offset - 1 if epoch == self.epoch else 1
        self.epoch, self.offset = epoch, offset
        got = self.got.get(epoch)
        if got is None:
            got = self.got[epoch] = array.array("q")
        if len(got) <= offset:
            got.extend([-1] * (offset + 1024 - len(got)))
        got[offset] = n

    def compare(self, ledger: Ledger) -> Counter[str]:
        """Count delivered, missing, signalled and wrong against ``ledger``.

        Expected: every publication after the client's first position.
        """
        counts: Counter[str] = Counter()
        if self.first is None:
            counts["never_subscribed"] += 1
            return counts
        start = ledger.rank(self.first)
        # A signal covers what was published after where the client was, up
        # to where it was told to continue (a position the store gave out).
        covered = []
        for since, to in self.signalled:
            low = None if since is None else ledger.rank(since)
            high = ledger.rank(to)
            covered.append(
                (-1.0 if low is None else low, -1.0 if high is None else high)
            )
        received = sum(1 for got in self.got.values() for n in got if n >= 0)
        for rank, (epoch, offset, n) in enumerate(ledger.published):
            if start is not None and rank <= start:
                continue
            got = self.got.get(epoch)
            value = got[offset] if got is not None and offset < len(got) else -1
            counts["expected"] += 1
            if value == n:
                counts["delivered"] += 1
            elif value >= 0:
                counts["wrong_payload"] += 1
            elif any(low < rank <= high for low, high in covered):
                counts["signalled"] += 1
            else:
                counts["missing"] += 1
                if len(self.missing) < 1000:
                    self.missing.append((epoch, offset))
        counts["unexpected"] = received - counts["delivered"] - counts["wrong_payload"]
        counts["duplicates"] = self.duplicates
        counts["gaps"] = self.gaps
        counts["unjustified"] = self.unjustified
        counts["lost_frames"] = self.lost_frames
        counts["protocol_errors"] = len(self.errors)
        return counts
