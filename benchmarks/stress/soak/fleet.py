"""The soak run's clients: a fleet of room members that comes and goes.

A :class:`Fleet` holds the open connections of one run, each a member of
one of ``rooms`` rooms of ``benchmarks.stress.soak.app``. It opens and closes
them (:meth:`Fleet.grow`, :meth:`Fleet.churn`, :meth:`Fleet.close_all`)
and checks the channel layer with probes: a probe is a text frame sent by
one member, which the server sends to the member's room through the layer;
every member that was in the room when the probe left, and that the fleet
did not close since, must receive it within the probe timeout.

Everything that goes wrong is counted in :class:`FleetStats`; nothing is
retried but connections, which the churn opens again to keep the count.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import itertools
import random
import time
from dataclasses import dataclass, field

from benchmarks.measures import HANDSHAKE_TIMEOUT, failure_name
from example_project.c10k.client import (
    ConnectionClosed,
    HandshakeError,
    LoadConnection,
    SourceAddresses,
    connect,
)


@dataclass
class FleetStats:
    """What happened to the fleet's connections and probes.

    Attributes:
        opened: Handshakes that succeeded.
        connect_failures: Failed handshakes, by kind (``HTTP 503``,
            ``timeout``, ``ECONNREFUSED``...).
        closed: Connections the fleet closed with a closing handshake.
        aborted: Connections the fleet dropped without one (a TCP reset).
        unclean_closes: Closing handshakes the server did not answer with
            code 1000 in time.
        dropped: Connections the server closed on its own, by close code.
        probes: Probes sent.
        expected: Deliveries expected (one per member per probe).
        delivered: Expected deliveries that arrived in time.
        missing: Expected deliveries that did not arrive in time.
        unexpected: Messages that were not an expected delivery (a probe
            twice, late, or to a member that was not in the room).
        late_joins: Probes received by members whose handshake ended after
            the probe left: the server had them in the room already; not
            checked, not a failure.
    """

    opened: int = 0
    connect_failures: collections.Counter[str] = field(
        default_factory=collections.Counter
    )
    closed: int = 0
    aborted: int = 0
    unclean_closes: int = 0
    dropped: collections.Counter[int] = field(default_factory=collections.Counter)
    probes: int = 0
    expected: int = 0
    delivered: int = 0
    missing: int = 0
    unexpected: int = 0
    late_joins: int = 0

    @property
    def failures(self) -> int:
        """Return the count of everything that should not have happened."""
        return (
            sum(self.connect_failures.values())
            + self.unclean_closes
            + sum(self.dropped.values())
            + self.missing
            + self.unexpected
        )


def _ignore(data: str | bytes, now_ns: int) -> None:
    pass


@dataclass
class _Probe:
    number: int
    room: int
    deadline: float
    pending: set[int]


class Fleet:
    """The open connections of one run, and their probes.

    Args:
        url: The server's ``ws://host:port`` (no path).
        rooms: How many rooms the members are spread over.
        concurrency: Handshakes in flight at most.
        abort_fraction: The share of the churn's disconnects that drop the
            TCP connection instead of closing.
        probe_timeout: Seconds a probe's members have to receive it.
        sources: The source addresses of the connections.
        seed: Seed of the choice of members to close and of probe senders.
    """

    def __init__(
        self,
        url: str,
        *,
        rooms: int,
        concurrency: int,
        abort_fraction: float,
        probe_timeout: float,
        sources: SourceAddresses,
        seed: int = 0,
    ) -> None:
        self.url = url
        self.rooms = rooms
        self.abort_fraction = abort_fraction
        self.probe_timeout = probe_timeout
        self.sources = sources
        self.stats = FleetStats()
        self._random = random.Random(seed)
        self._slots = asyncio.Semaphore(concurrency)
        self._ids = itertools.count()
        self._probe_count = 0
        # The number of the first probe each member must receive.
        self._joined_at: dict[int, int] = {}
        # Open members: a list for picking at random, its index, their rooms.
        self._open: list[int] = []
        self._index: dict[int, int] = {}
        self._connections: dict[int, LoadConnection] = {}
        self._room_of: dict[int, int] = {}
        self._members: list[set[int]] = [set() for _ in range(rooms)]
        self._probes: dict[int, _Probe] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0

    def __len__(self) -> int:
        return len(self._open)

    # -- connections ---------------------------------------------------------

    async def open_one(self) -> None:
        """Open one member in the next room; count a failure, never raise."""
        member = next(self._ids)
        room = member % self.rooms
        self.in_flight += 1
        try:
            async with self._slots:
                connection = await connect(
                    f"{self.url}/ws/soak/{room}/",
                    local_addr=self.sources.next(),
                    timeout=HANDSHAKE_TIMEOUT,
                )
        except (HandshakeError, OSError, TimeoutError) as error:
            self.stats.connect_failures[failure_name(error)] += 1
            return
        finally:
            self.in_flight -= 1
        self.stats.opened += 1
        connection.on_message = lambda data, now_ns: self._received(member, data)
        self._index[member] = len(self._open)
        self._open.append(member)
        self._connections[member] = connection
        self._room_of[member] = room
        self._members[room].add(member)
        self._joined_at[member] = self._probe_count

    def start_opening(self, count: int) -> None:
        """Open ``count`` members in the background."""
        for _ in range(count):
            self._spawn(self.open_one())

    async def grow(self, count: int) -> None:
        """Open ``count`` members; return when every handshake has ended."""
        await asyncio.gather(*(self.open_one() for _ in range(count)))

    def close_random(self, count: int) -> None:
        """Close ``count`` members chosen at random, some by dropping them."""
        for _ in range(min(count, len(self._open))):
            member = self._open[self._random.randrange(len(self._open))]
            abort = self._random.random() < self.abort_fraction
            self._spawn(self._close(self._forget(member), abort=abort))

    async def close_all(self, concurrency: int) -> None:
        """Close every member with a closing handshake, ``concurrency`` at once."""
        slots = asyncio.Semaphore(concurrency)

        async def close(connection: LoadConnection) -> None:
            async with slots:
                await self._close(connection, abort=False)

        connections = [self._forget(member) for member in list(self._open)]
        await asyncio.gather(*(close(connection) for connection in connections))
        await self.wait_background()

    async def wait_background(self) -> None:
        """Wait for the handshakes and closes started in the background."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def check_dropped(self) -> None:
        """Count and forget the members that the server closed on its own."""
        for member in [m for m in self._open if self._connections[m].close_code]:
            code = self._connections[member].close_code
            assert code is not None
            self.stats.dropped[code] += 1
            self._forget(member)

    # -- probes --------------------------------------------------------------

    async def probe(self) -> bool:
        """Send one probe from a random member; return ``False`` if none is open."""
        if not self._open:
            return False
        sender = self._open[self._random.randrange(len(self._open))]
        room = self._room_of[sender]
        number = self._probe_count
        self._probe_count += 1
        pending = set(self._members[room])
        self._probes[number] = _Probe(
            number, room, time.monotonic() + self.probe_timeout, pending
        )
        self.stats.probes += 1
        self.stats.expected += len(pending)
        try:
            await self._connections[sender].send_text(f"p{number}")
        except ConnectionClosed:
            # The server closed the sender: check_dropped() counts it, and
            # nothing was sent.
            probe = self._probes.pop(number)
            self.stats.probes -= 1
            self.stats.expected -= len(probe.pending)
        return True

    def expire_probes(self, everything: bool = False) -> None:
        """Count the deliveries of probes past their deadline as missing."""
        now = time.monotonic()
        for probe in list(self._probes.values()):
            if everything or probe.deadline <= now:
                self.stats.missing += len(probe.pending)
                del self._probes[probe.number]

    async def settle_probes(self) -> None:
        """Wait for the probes in flight to arrive or expire."""
        while self._probes:
            if all(not probe.pending for probe in self._probes.values()):
                self._probes.clear()
                return
            self.expire_probes()
            await asyncio.sleep(0.05)

    # -- internals -----------------------------------------------------------

    def _spawn(
        self, coroutine: collections.abc.Coroutine[object, object, None]
    ) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _received(self, member: int, data: str | bytes) -> None:
        number = int(data[1:]) if isinstance(data, str) and data[:1] == "p" else -1
        probe = self._probes.get(number)
        if probe is None or member not in probe.pending:
            if 0 <= number < self._joined_at.get(member, 0):
                self.stats.late_joins += 1
            else:
                self.stats.unexpected += 1
            return
        probe.pending.discard(member)
        self.stats.delivered += 1

    def _forget(self, member: int) -> LoadConnection:
        index = self._index.pop(member)
        last = self._open.pop()
        if last != member:
            self._open[index] = last
            self._index[last] = index
        room = self._room_of.pop(member)
        del self._joined_at[member]
        self._members[room].discard(member)
        for probe in self._probes.values():
            if member in probe.pending:
                probe.pending.discard(member)
                self.stats.expected -= 1
        connection = self._connections.pop(member)
        # What arrives once the fleet has let a member go is not checked.
        connection.on_message = _ignore
        return connection

    async def _close(self, connection: LoadConnection, *, abort: bool) -> None:
        if abort:
            connection.abort()
            self.stats.aborted += 1
            return
        await connection.close(1000, timeout=10.0)
        self.stats.closed += 1
        if connection.close_code != 1000:
            self.stats.unclean_closes += 1
