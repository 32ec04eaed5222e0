"""The group memberships a process holds, with no I/O and no event loop.

Each membership is held by one process: a process-local channel's by its
owner, a normal channel's by the process that last added it. The holder's
queue is bound to the groups exchange once per membership (the binding's
arguments carry the channel and a join id, so each membership is a binding
of its own); a group message reaches the holder once, and the holder hands
it to each live member. Joins and leaves are published to the group like
its messages, so each holder sees them in the same order as the messages
around them.

Bindings do not expire: the holder does. A membership made (or renewed)
when the holder's clock read ``now`` is live while it reads below
``now + group_expiry``. Every function that depends on time takes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Binding", "Memberships"]


@dataclass(frozen=True, slots=True)
class Binding:
    """One membership's binding of the holder's queue to the groups exchange."""

    group: str
    channel: str
    join: str


class Memberships:
    """Hold this process's group memberships: who is in a group, until when."""

    def __init__(self) -> None:
        # group -> {channel: (join id, live until)}
        self._groups: dict[str, dict[str, tuple[str, float]]] = {}

    def join(self, group: str, channel: str, join: str, until: float) -> list[Binding]:
        """Hold ``channel``'s membership of ``group`` until ``until``.

        Returns the bindings it replaces (an earlier join of the same
        membership), to be removed.
        """
        members = self._groups.setdefault(group, {})
        old = members.get(channel)
        members[channel] = (join, until)
        if old is None or old[0] == join:
            return []
        return [Binding(group, channel, old[0])]

    def leave(self, group: str, channel: str) -> list[Binding]:
        """Stop holding ``channel``'s membership of ``group``, if held.

        Returns the binding to remove.
        """
        members = self._groups.get(group)
        if members is None:
            return []
        old = members.pop(channel, None)
        if not members:
            del self._groups[group]
        return [] if old is None else [Binding(group, channel, old[0])]

    def live(self, group: str, now: float) -> tuple[list[str], list[Binding]]:
        """Return the live members of ``group``, and the bindings that expired.

        Expired memberships are forgotten.
        """
        members = self._groups.get(group)
        if members is None:
            return [], []
        live: list[str] = []
        expired: list[Binding] = []
        for channel, (join, until) in members.items():
            if until > now:
                live.append(channel)
            else:
                expired.append(Binding(group, channel, join))
        for binding in expired:
            del members[binding.channel]
        if not members:
            del self._groups[group]
        return live, expired

    def bindings(self) -> list[Binding]:
        """Return every binding held, to declare again on a new connection."""
        return [
            Binding(group, channel, join)
            for group, members in self._groups.items()
            for channel, (join, _) in members.items()
        ]

    def clear(self) -> None:
        """Forget every membership."""
        self._groups.clear()

    def __len__(self) -> int:
        return sum(len(members) for members in self._groups.values())
