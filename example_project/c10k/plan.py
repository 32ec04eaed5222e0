"""Plan a ``testecho`` run: limits, source addresses, timing, payloads.

Pure functions of their arguments: the command reads the system's limits
and the clock, and passes them in.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "FD_RESERVE",
    "MIN_SIZE",
    "PORT_RESERVE",
    "FdPlan",
    "due_clients",
    "message_times",
    "origin_for",
    "parse_port_range",
    "payload",
    "plan_fd_limit",
    "source_addresses_needed",
]

FD_RESERVE = 64
"""File descriptors a client process needs besides its sockets."""

PORT_RESERVE = 1_000
"""Ephemeral ports of a source address left to other processes."""

MIN_SIZE = 16
"""The smallest ``--size``: room for a client and message number."""


@dataclass(frozen=True)
class FdPlan:
    """What to do about the open-file limit before opening ``clients`` sockets.

    Attributes:
        soft: The soft limit to set, or ``None`` to leave it as it is.
        problem: Why the run cannot fit under the hard limit, and the fix;
            ``None`` when it fits.
    """

    soft: int | None
    problem: str | None


def plan_fd_limit(
    clients: int, soft: int, hard: int, reserve: int = FD_RESERVE
) -> FdPlan:
    """Return how to raise the open-file limit for ``clients`` sockets.

    The soft limit is raised to the hard one when it is too low (a process
    may do that on its own; only root may raise the hard limit).

    Args:
        clients: The number of connections to hold at once.
        soft: The current soft ``RLIMIT_NOFILE``.
        hard: The current hard ``RLIMIT_NOFILE`` (``resource.RLIM_INFINITY``
            for none).
        reserve: Descriptors needed besides the sockets.
    """
    need = clients + reserve
    if soft == resource.RLIM_INFINITY or soft >= need:
        return FdPlan(None, None)
    if hard == resource.RLIM_INFINITY:
        return FdPlan(need, None)
    if hard >= need:
        return FdPlan(hard, None)
    problem = (
        f"{clients} clients need about {need} open files, and this process may "
        f"open at most {hard} (its hard limit, ulimit -Hn). Raise the limit "
        f"(as root: ulimit -n {need} in this shell; LimitNOFILE={need} for a "
        "systemd service; nofile in /etc/security/limits.conf for a login), "
        f"run fewer clients (--clients {max(hard - reserve, 0)}), or split "
        "them over several testecho processes."
    )
    return FdPlan(None, problem)


def parse_port_range(text: str) -> int:
    """Return how many ports ``/proc/sys/net/ipv4/ip_local_port_range`` allows.

    Raises:
        ValueError: ``text`` is not two port numbers, low then high.
    """
    parts = text.split()
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise ValueError(f"Expected two port numbers, got {text!r}.")
    low, high = int(parts[0]), int(parts[1])
    if not 0 < low <= high < 65_536:
        raise ValueError(f"Expected 0 < low <= high < 65536, got {low} and {high}.")
    return high - low + 1


def source_addresses_needed(
    clients: int, ports: int, reserve: int = PORT_RESERVE
) -> int:
    """Return how many source addresses ``clients`` connections to one server need.

    Each connection to one server address takes an ephemeral port of its
    source address. Linux's ``connect()`` looks for a free port among half
    of the range first (ports of one parity), and only then in the other
    half: past about half the range on one source address, every
    ``connect()`` scans thousands of used ports in the kernel, which stalls
    the client. So each address gets at most half the range, less
    ``reserve`` ports left to other processes.
    """
    usable = max(ports // 2 - reserve, 1)
    return max(1, math.ceil(clients / usable))


def due_clients(elapsed: float, clients: int, ramp: float) -> int:
    """Return how many clients should have started ``elapsed`` s into the ramp.

    Starts are spread evenly: client ``i`` starts at ``i * ramp / clients``,
    so the first starts at once and the last at ``ramp * (clients - 1) /
    clients``. A ramp of 0 starts them all at once.
    """
    if ramp <= 0 or elapsed >= ramp:
        return clients
    if elapsed < 0:
        return 0
    return min(clients, math.floor(elapsed * clients / ramp) + 1)


def message_times(connected: float, end: float, messages: int) -> list[float]:
    """Return when a client connected at ``connected`` sends each echo.

    The ``messages`` echoes are spread evenly between the connection and
    ``end`` (the end of the hold), none at either edge, so that the clients'
    echoes are spread over the run instead of arriving together.
    """
    span = max(end - connected, 0.0)
    return [connected + span * (k + 1) / (messages + 1) for k in range(messages)]


def payload(client: int, number: int, size: int) -> str:
    """Return the text of echo ``number`` of ``client``: ``size`` ASCII characters.

    It starts with the client and message numbers, so an echo sent back to
    the wrong connection, or out of order, does not match.

    Raises:
        ValueError: ``size`` has no room for the numbers.
    """
    head = f"{client}:{number}:"
    if size < max(len(head), MIN_SIZE):
        raise ValueError(
            f"Expected a message size of at least {max(len(head), MIN_SIZE)}, "
            f"got {size}."
        )
    return head + "x" * (size - len(head))


def origin_for(url: str) -> str:
    """Return the ``Origin`` a page served by the server at ``url`` would send.

    Raises:
        ValueError: ``url`` is not a ``ws://`` URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"Expected a ws://host:port/path/ URL, got {url!r}.")
    return f"http://{parts.netloc.rpartition('@')[2]}"
