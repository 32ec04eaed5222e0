"""The state of the in-memory channel layer, with no I/O and no event loop.

:class:`LayerCore` holds per-channel bounded queues and group memberships.
Every function that depends on time takes ``now`` (seconds on a clock that
does not go backwards, such as :func:`time.monotonic`) and returns its result,
so the rules for capacity and expiry are tested by calling functions.
:class:`~django_realtime.layers.memory.InMemoryChannelLayer` wraps it in
asyncio: it validates names, waits for messages and logs.

Rules:

- A message sent at ``now`` is live while the clock is below
  ``now + expiry``; an expired message is never returned.
- A channel holds at most its capacity of live messages; a push beyond it
  raises :exc:`~django_realtime.exceptions.ChannelFull`.
- A membership made (or renewed) at ``now`` is live while the clock is below
  ``now + group_expiry``.
- A channel found holding an expired message is treated as abandoned by its
  reader: it leaves every group (a direct send still reaches it), and the
  next :meth:`LayerCore.pop` on it raises
  :exc:`~django_realtime.exceptions.GroupsExpired` once, so that a reader
  that was only slow learns it (the note is kept for ``group_expiry``).
- Messages are stored as a shallow copy taken at send time, so a sender may
  reuse its dict. A group message is stored once and shared by all members;
  each receiver gets its own shallow copy. Nested values are shared: treat
  received messages as read-only below the top level.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from django_realtime.exceptions import ChannelFull, GroupsExpired
from django_realtime.types import Message

# (expires_at, message, shared): ``shared`` marks a message stored in several
# queues at once, which must be copied on the way out.
_Entry = tuple[float, Message, bool]


@dataclass(slots=True)
class LayerStats:
    """Count what happened to messages since the layer was created.

    Counters only grow; :meth:`LayerCore.flush` does not reset them.

    Attributes:
        sent: Messages put on a channel (one per member for group sends).
        received: Messages handed to a receiver.
        rejected: Direct sends refused with ``ChannelFull``.
        dropped_messages: Group deliveries skipped because the member channel
            was full. Each is also reported by a warning log.
        expired_messages: Messages discarded unread because they expired.
        expired_memberships: Group memberships removed because they expired
            or because their channel was found holding expired messages.
        discarded_messages: Messages dropped unread because the consumer of
            their channel had ended (``discard_channel()``).
    """

    sent: int = 0
    received: int = 0
    rejected: int = 0
    dropped_messages: int = 0
    expired_messages: int = 0
    expired_memberships: int = 0
    discarded_messages: int = 0


@dataclass(frozen=True, slots=True)
class GroupSendResult:
    """Say where a group message went.

    Attributes:
        delivered: Channels that received the message.
        full: Member channels that were at capacity and did not receive it.
    """

    delivered: list[str]
    full: list[str]

    @property
    def members(self) -> int:
        """Return how many live members the group had."""
        return len(self.delivered) + len(self.full)


@dataclass(frozen=True, slots=True)
class SweepReport:
    """Summarise what expired since the previous report.

    Attributes:
        expired_messages: Messages discarded unread.
        channels: Channels those messages were on.
        expired_memberships: Group memberships removed.
    """

    expired_messages: int
    channels: int
    expired_memberships: int


class _Channel:
    __slots__ = ("capacity", "entries")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: deque[_Entry] = deque()


@dataclass(slots=True)
class _Unreported:
    expired_messages: int = 0
    channels: set[str] = field(default_factory=set)
    expired_memberships: int = 0


class LayerCore:
    """Hold the queues and groups of one in-memory channel layer.

    Args:
        expiry: Seconds a message stays deliverable.
        group_expiry: Seconds a group membership lasts unless renewed.
        capacity_of: Return the capacity of a channel, given its name. It is
            called once when a channel's queue is created.
        sweep_interval: Seconds between full sweeps of expired state in
            :meth:`maybe_sweep`; between sweeps, expiry is applied lazily to
            the channels and groups an operation touches.
    """

    def __init__(
        self,
        *,
        expiry: float,
        group_expiry: float,
        capacity_of: Callable[[str], int],
        sweep_interval: float = 1.0,
    ) -> None:
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.sweep_interval = sweep_interval
        self.stats = LayerStats()
        self._capacity_of = capacity_of
        self._channels: dict[str, _Channel] = {}
        # group -> {channel: joined_at}, in order of joining: renewing a
        # membership moves it to the end, so expired ones are always first.
        self._groups: dict[str, dict[str, float]] = {}
        # channel -> groups it is in, to leave them all without a full scan.
        self._groups_of: dict[str, set[str]] = {}
        self._next_sweep = float("-inf")
        self._unreported = _Unreported()
        # channel -> (groups it was taken out of, when): for its next pop().
        self._evicted: dict[str, tuple[tuple[str, ...], float]] = {}

    # Channels

    def push(self, channel: str, message: Message, now: float) -> None:
        """Queue a shallow copy of ``message`` on ``channel``.

        Raises:
            ChannelFull: ``channel`` holds its capacity of live messages.
        """
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(self._capacity_of(channel))
        else:
            entries = state.entries
            if entries and entries[0][0] <= now:
                self._expire(channel, state, now)
            if len(entries) >= state.capacity:
                self.stats.rejected += 1
                raise ChannelFull(
                    f"Channel {channel!r} is full: it holds {len(entries)} "
                    f"messages, its capacity is {state.capacity}."
                )
        state.entries.append((now + self.expiry, dict(message), False))
        self.stats.sent += 1

    def pop(self, channel: str, now: float) -> Message | None:
        """Remove and return the oldest live message on ``channel``, or ``None``.

        Raises:
            GroupsExpired: ``channel`` was taken out of its groups for an
                expired message since the last pop (raised once).
        """
        state = self._channels.get(channel)
        if state is None:
            if self._evicted:
                self._raise_if_evicted(channel)
            return None
        entries = state.entries
        if entries and entries[0][0] <= now:
            self._expire(channel, state, now)
        if self._evicted:
            self._raise_if_evicted(channel)
        if not entries:
            return None
        _, message, shared = entries.popleft()
        self.stats.received += 1
        return dict(message) if shared else message

    def discard(self, channel: str) -> int:
        """Drop ``channel``'s queue: its receiver has ended for good.

        Returns how many messages it held. Group memberships stay (the
        receiver leaves its groups itself); a later message queues anew.
        """
        self._evicted.pop(channel, None)
        state = self._channels.pop(channel, None)
        if state is None:
            return 0
        self.stats.discarded_messages += len(state.entries)
        return len(state.entries)

    def size(self, channel: str, now: float) -> int:
        """Return how many live messages wait on ``channel``."""
        state = self._channels.get(channel)
        if state is None:
            return 0
        if state.entries and state.entries[0][0] <= now:
            self._expire(channel, state, now)
        return len(state.entries)

    def capacity(self, channel: str) -> int:
        """Return the capacity of ``channel``."""
        state = self._channels.get(channel)
        return self._capacity_of(channel) if state is None else state.capacity

    # Groups

    def group_add(self, group: str, channel: str, now: float) -> None:
        """Add ``channel`` to ``group``, or renew its membership."""
        members = self._groups.get(group)
        if members is None:
            members = self._groups[group] = {}
        else:
            members.pop(channel, None)
        members[channel] = now
        groups = self._groups_of.get(channel)
        if groups is None:
            self._groups_of[channel] = {group}
        else:
            groups.add(group)

    def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; do nothing if it is not a member."""
        members = self._groups.get(group)
        if members is None or members.pop(channel, None) is None:
            return
        if not members:
            del self._groups[group]
        self._forget_membership(group, channel)

    def members(self, group: str, now: float) -> list[str]:
        """Return the live members of ``group``, oldest membership first."""
        members = self._groups.get(group)
        if members is None:
            return []
        self._trim(group, members, now)
        return list(members)

    def group_push(self, group: str, message: Message, now: float) -> GroupSendResult:
        """Queue ``message`` on every live member of ``group`` that has room.

        The message is copied once and shared between the members' queues.
        Full members are skipped and listed in the result; they are counted
        in :attr:`LayerStats.dropped_messages`.
        """
        members = self._groups.get(group)
        if members is None:
            return GroupSendResult([], [])
        self._trim(group, members, now)
        entry: _Entry = (now + self.expiry, dict(message), len(members) > 1)
        channels = self._channels
        delivered: list[str] = []
        full: list[str] = []
        abandoned: list[str] = []
        for channel in members:
            state = channels.get(channel)
            if state is None:
                state = channels[channel] = _Channel(self._capacity_of(channel))
            else:
                entries = state.entries
                if entries and entries[0][0] <= now:
                    # Leaving groups now would change ``members`` under us.
                    self._expire(channel, state, now, leave_groups=False)
                    abandoned.append(channel)
                    continue
                if len(entries) >= state.capacity:
                    full.append(channel)
                    continue
            state.entries.append(entry)
            delivered.append(channel)
        for channel in abandoned:
            self._leave_groups(channel, now)
        self.stats.sent += len(delivered)
        self.stats.dropped_messages += len(full)
        return GroupSendResult(delivered, full)

    # Expiry

    def maybe_sweep(self, now: float) -> SweepReport | None:
        """Sweep if :attr:`sweep_interval` has passed since the last sweep.

        Returns:
            What expired since the previous report, or ``None`` if it is not
            yet time to sweep or nothing expired.
        """
        if now < self._next_sweep:
            return None
        return self.sweep(now)

    def sweep(self, now: float) -> SweepReport | None:
        """Discard expired messages and memberships everywhere.

        Channel queues left empty are dropped; they are created again by the
        next push.

        Returns:
            What expired since the previous report (including what operations
            found expired lazily), or ``None`` if nothing did.
        """
        self._next_sweep = now + self.sweep_interval
        for channel, state in list(self._channels.items()):
            entries = state.entries
            if entries and entries[0][0] <= now:
                self._expire(channel, state, now)
            if not entries:
                del self._channels[channel]
        for group, members in list(self._groups.items()):
            self._trim(group, members, now)
        if self._evicted:
            # A reader that has not come back in group_expiry is gone.
            cutoff = now - self.group_expiry
            for channel, (_, when) in list(self._evicted.items()):
                if when <= cutoff:
                    del self._evicted[channel]
        unreported = self._unreported
        if not (unreported.expired_messages or unreported.expired_memberships):
            return None
        self._unreported = _Unreported()
        return SweepReport(
            expired_messages=unreported.expired_messages,
            channels=len(unreported.channels),
            expired_memberships=unreported.expired_memberships,
        )

    def flush(self) -> None:
        """Drop every message and membership; keep the statistics."""
        self._channels.clear()
        self._groups.clear()
        self._groups_of.clear()
        self._evicted.clear()
        self._unreported = _Unreported()

    # Internals

    def _expire(
        self, channel: str, state: _Channel, now: float, leave_groups: bool = True
    ) -> None:
        entries = state.entries
        count = 0
        while entries and entries[0][0] <= now:
            entries.popleft()
            count += 1
        self.stats.expired_messages += count
        self._unreported.expired_messages += count
        self._unreported.channels.add(channel)
        if leave_groups:
            self._leave_groups(channel, now)

    def _raise_if_evicted(self, channel: str) -> None:
        evicted = self._evicted.pop(channel, None)
        if evicted is not None:
            raise GroupsExpired(channel, evicted[0])

    def _leave_groups(self, channel: str, now: float) -> None:
        groups = self._groups_of.pop(channel, None)
        if not groups:
            return
        self._evicted[channel] = (tuple(groups), now)
        for group in groups:
            members = self._groups.get(group)
            if members is None:
                continue
            members.pop(channel, None)
            if not members:
                del self._groups[group]
        self.stats.expired_memberships += len(groups)
        self._unreported.expired_memberships += len(groups)

    def _trim(self, group: str, members: dict[str, float], now: float) -> None:
        cutoff = now - self.group_expiry
        expired: list[str] = []
        for channel, joined_at in members.items():
            if joined_at > cutoff:
                break
            expired.append(channel)
        if not expired:
            return
        for channel in expired:
            del members[channel]
            self._forget_membership(group, channel)
        if not members:
            del self._groups[group]
        self.stats.expired_memberships += len(expired)
        self._unreported.expired_memberships += len(expired)

    def _forget_membership(self, group: str, channel: str) -> None:
        groups = self._groups_of.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._groups_of[channel]
