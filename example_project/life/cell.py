"""One cell's side of the game: what it knows, what it sends, when it steps.

This is the pure core of a cell client, with no sockets and no event loop:
feed it what the server relays (:meth:`Cell.receive`) and the time, send what
it returns. :mod:`example_project.life.client` is the networking shell
around it.

The protocol, in JSON text frames. A cell sends two kinds of messages, and
the server relays each to the cell's eight neighbours and to the pages
watching the board, adding the sender's ``x`` and ``y``:

``{"type": "state", "generation": g, "alive": true}``
    The sender's state at generation ``g``.
``{"type": "hello", "generation": g}``
    The sender needs its neighbours' states from generation ``g`` on: it
    has just connected or reconnected (a hello to all neighbours), or it
    has waited too long for some of them (a hello to each of those). Each
    neighbour answers with the states it still holds from ``g`` on,
    addressed to the sender alone.

``"to"`` narrows who the server relays a message to: ``"neighbours"``
leaves the pages out (hellos are of no interest to them), ``[x, y]`` names
one neighbour.

A cell computes generation ``g + 1`` as soon as it has the states of its
eight neighbours at ``g``. Neighbours are therefore never more than one
generation apart (to step past ``g + 1``, a neighbour needs this cell's
state at ``g + 1``), so a cell buffers its neighbours' states of its own
generation and of the next one, and keeps its own two latest states for the
neighbours that ask again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from example_project.life.rules import next_state
from example_project.life.topology import Coordinates, neighbours

__all__ = [
    "Cell",
    "Hello",
    "Message",
    "ProtocolError",
    "State",
    "decode",
    "encode",
]


class ProtocolError(ValueError):
    """A relayed message that this cell cannot take.

    It is malformed, comes from a cell that is not a neighbour, or
    contradicts what the cell already knows (typically two runs playing on
    the same board).
    """


@dataclass(frozen=True)
class State:
    """A cell's state at a generation, for all neighbours or for one (``to``)."""

    generation: int
    alive: bool
    to: Coordinates | None = None


@dataclass(frozen=True)
class Hello:
    """Ask the neighbours, or one (``to``), for their states from ``generation`` on."""

    generation: int
    to: Coordinates | None = None


Message = State | Hello


def encode(message: Message) -> dict[str, Any]:
    """Return the JSON object a cell sends for ``message``."""
    content: dict[str, Any]
    if isinstance(message, Hello):
        content = {"type": "hello", "generation": message.generation}
        content["to"] = "neighbours" if message.to is None else list(message.to)
        return content
    content = {
        "type": "state",
        "generation": message.generation,
        "alive": message.alive,
    }
    if message.to is not None:
        content["to"] = list(message.to)
    return content


def _integer(content: dict[str, Any], key: str) -> int:
    value = content.get(key)
    # bool is an int to Python, not to this protocol.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(
            f"Expected {key!r} to be an integer >= 0, got {value!r} in "
            f"{content!r:.200}."
        )
    return value


def decode(content: Any) -> tuple[Coordinates, Message]:
    """Return the sender and the message of a JSON object the server relayed.

    Raises:
        ProtocolError: ``content`` is not a relayed state or hello.
    """
    if not isinstance(content, dict):
        raise ProtocolError(f"Expected a JSON object, got {content!r:.200}.")
    sender = (_integer(content, "x"), _integer(content, "y"))
    generation = _integer(content, "generation")
    kind = content.get("type")
    if kind == "state":
        alive = content.get("alive")
        if not isinstance(alive, bool):
            raise ProtocolError(
                f"Expected 'alive' to be true or false, got {alive!r} in "
                f"{content!r:.200}."
            )
        return sender, State(generation, alive)
    if kind == "hello":
        return sender, Hello(generation)
    raise ProtocolError(
        f"Expected a message of type 'state' or 'hello', got {kind!r} in "
        f"{content!r:.200}."
    )


class Cell:
    """The state and bookkeeping of one cell, fed one message at a time.

    Every method that takes ``now`` (seconds on any monotonic clock) returns
    the messages to send, in order.

    Args:
        x: The cell's column.
        y: The cell's row.
        width: Columns of the board.
        height: Rows of the board.
        alive: The cell's state at generation 0.
        until: Stop stepping at this generation; ``None`` steps forever.
        patience: Seconds without a step after which :meth:`poll` asks the
            neighbours again, in case a message was lost.

    Raises:
        ValueError: The size, the position, ``until`` or ``patience`` is
            out of bounds.
    """

    def __init__(
        self,
        x: int,
        y: int,
        width: int,
        height: int,
        alive: bool,
        *,
        until: int | None = None,
        patience: float = 2.0,
    ) -> None:
        if until is not None and until < 0:
            raise ValueError(f"Expected until >= 0 or None, got {until!r}.")
        if patience <= 0:
            raise ValueError(f"Expected a patience > 0 seconds, got {patience!r}.")
        self.position: Coordinates = (x, y)
        self.neighbours = frozenset(neighbours(x, y, width, height))
        self.until = until
        self.patience = patience
        self.generation = 0
        # Own states by generation: the latest two, which neighbours may
        # still need.
        self._states: dict[int, bool] = {0: alive}
        # Neighbours' states by generation, then by neighbour: the current
        # generation and the next one.
        self._heard: dict[int, dict[Coordinates, bool]] = {}
        self._waiting_since: float | None = None

    def __repr__(self) -> str:
        return (
            f"<Cell {self.position} generation={self.generation} "
            f"alive={self.alive} missing={sorted(self.missing())}>"
        )

    @property
    def alive(self) -> bool:
        """Return the cell's state at its current generation."""
        return self._states[self.generation]

    @property
    def finished(self) -> bool:
        """Return whether the cell and all its neighbours reached ``until``.

        A finished cell is never asked for anything again, unless a
        neighbour lost its memory.
        """
        return (
            self.until is not None
            and self.generation == self.until
            and len(self._heard.get(self.until, {})) == len(self.neighbours)
        )

    def missing(self) -> set[Coordinates]:
        """Return the neighbours whose state at the current generation is awaited."""
        return set(self.neighbours - self._heard.get(self.generation, {}).keys())

    def greet(self, now: float) -> list[Message]:
        """Return what to send on (re)connecting: a hello, then the latest states.

        The hello makes the neighbours that were there first send their
        states again; the states reach the neighbours that were waiting.
        """
        self._waiting_since = now
        return [Hello(self.generation), *self._states_from(self.generation - 1)]

    def poll(self, now: float) -> list[Message]:
        """Return hellos if the cell has waited ``patience`` seconds in vain.

        One hello goes to each neighbour whose state is missing, so that
        only those answer. Call this whenever ``patience`` seconds pass
        without a message, and after messages that may not have helped.
        """
        if self.finished or self._waiting_since is None:
            return []
        if now - self._waiting_since < self.patience:
            return []
        self._waiting_since = now
        return [Hello(self.generation, to) for to in sorted(self.missing())]

    def receive(
        self, sender: Coordinates, message: Message, now: float
    ) -> list[Message]:
        """Take a message relayed from ``sender``; return what to send.

        A state completes the cell's view of its neighbours for some
        generation, and each generation it completes makes the cell step
        once and send its new state to all. A hello is answered with the
        states the sender may still need, addressed to the sender.

        Raises:
            ProtocolError: ``sender`` is not a neighbour, or the state is
                more than one generation ahead, or contradicts an earlier
                one. The cell is unchanged.
        """
        if sender not in self.neighbours:
            raise ProtocolError(
                f"Expected a message from a neighbour of {self.position} "
                f"({sorted(self.neighbours)}), got one from {sender}."
            )
        if isinstance(message, Hello):
            return self._states_from(message.generation, to=sender)
        return self._take_state(sender, message, now)

    def _states_from(
        self, generation: int, to: Coordinates | None = None
    ) -> list[Message]:
        return [
            State(number, alive, to)
            for number, alive in sorted(self._states.items())
            if number >= generation
        ]

    def _take_state(
        self, sender: Coordinates, state: State, now: float
    ) -> list[Message]:
        generation = state.generation
        if generation < self.generation:
            # Already used: a copy sent again for a neighbour that asked.
            return []
        if generation > self.generation + 1:
            raise ProtocolError(
                f"Expected states of generation {self.generation} or "
                f"{self.generation + 1} at {self.position}, got generation "
                f"{generation} from {sender}: is another run playing on this board?"
            )
        if self.until is not None and generation > self.until:
            # A neighbour told to play longer than this cell: nothing to do.
            return []
        heard = self._heard.setdefault(generation, {})
        known = heard.get(sender)
        if known is not None and known != state.alive:
            raise ProtocolError(
                f"Expected {sender} to be {'alive' if known else 'dead'} at "
                f"generation {generation}, as it said before, got "
                f"{'alive' if state.alive else 'dead'}: is another run playing on "
                "this board?"
            )
        heard[sender] = state.alive
        return self._step_while_complete(now)

    def _step_while_complete(self, now: float) -> list[Message]:
        sent: list[Message] = []
        while self.until is None or self.generation < self.until:
            heard = self._heard.get(self.generation, {})
            if len(heard) < len(self.neighbours):
                break
            alive = next_state(self.alive, sum(heard.values()))
            del self._heard[self.generation]
            self._states.pop(self.generation - 1, None)
            self.generation += 1
            self._states[self.generation] = alive
            self._waiting_since = now
            sent.append(State(self.generation, alive))
        return sent
