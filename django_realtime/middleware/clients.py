"""Who a connection comes from, and how many connections each client holds.

The pure accounting under :class:`~django_realtime.middleware.limits.ConnectionLimits`'
per-client limits; nothing here needs an event loop.

:class:`ClientAddress` says where a connection's client address is read:
the server's peer address (``scope["client"]``) by default, or a header a
trusted proxy sets. A proxy header is only ever read when configured:
a client can send any header, so only the entries the trusted proxies added
are believed.

:class:`ClientCounter` counts the connections each client (an address or a
user) holds against one limit, and decides each new one. Refusals in a row
of one client are counted; the first, the tenth, the hundredth and so on
are marked to be logged, so a client hammering at its limit writes a few
lines with counts, not one per attempt.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django_realtime.types import Headers

__all__ = ["ClientAddress", "ClientCounter", "Refusal", "worth_logging"]


@dataclass(frozen=True)
class ClientAddress:
    """Where the client address of a connection comes from.

    Args:
        header: ``None`` (the default) for the server's peer address,
            ``scope["client"]``; or the name of a header a proxy in front of
            the server sets, such as ``"X-Forwarded-For"`` (a list of
            addresses, each proxy appending the one it got the request
            from) or ``"X-Real-IP"`` (one address).
        trusted_proxies: How many proxies in front of the server add to
            ``header``: the address used is this many entries from the
            right, the one the outermost trusted proxy saw. With fewer
            entries, the leftmost. Entries further left came from the client
            and are ignored.
        ipv6_prefix: IPv6 clients are counted by network of this prefix
            length (a home or a host usually has a whole ``/64``); 128
            counts each address.

    A connection without the header, or whose entry is not an IP address,
    is counted by its peer address. IPv4-mapped IPv6 addresses count as
    IPv4 ones.
    """

    header: str | None = None
    trusted_proxies: int = 1
    ipv6_prefix: int = 64

    def __post_init__(self) -> None:
        if self.header is not None and (
            not isinstance(self.header, str) or not self.header.strip()
        ):
            raise ValueError(
                "Expected a header name such as 'X-Forwarded-For', got "
                f"{self.header!r}."
            )
        if type(self.trusted_proxies) is not int or self.trusted_proxies < 1:
            raise ValueError(
                f"Expected trusted_proxies >= 1, got {self.trusted_proxies!r}."
            )
        if type(self.ipv6_prefix) is not int or not 0 <= self.ipv6_prefix <= 128:
            raise ValueError(
                f"Expected ipv6_prefix from 0 to 128, got {self.ipv6_prefix!r}."
            )

    def of(self, scope: Mapping[str, Any]) -> str | None:
        """Return the client key of ``scope``, or ``None`` when it has no address.

        The key is an IPv4 address (``"203.0.113.7"``), an IPv6 network
        (``"2001:db8:1:2::/64"``), or the peer address as the server gave it
        when it is not an IP address (a Unix socket's, say).
        """
        if self.header is not None:
            entry = self._header_entry(scope.get("headers", ()), self.header)
            if entry is not None:
                address = _ip(entry)
                if address is not None:
                    return self._key(address)
        client = scope.get("client")
        if not client:
            return None
        peer = str(client[0])
        address = _ip(peer)
        return peer if address is None else self._key(address)

    def _header_entry(self, headers: Headers, header: str) -> str | None:
        name = header.strip().lower().encode("latin-1")
        entries: list[str] = [
            entry.strip()
            for key, value in headers
            if key.lower() == name
            for entry in value.decode("latin-1").split(",")
            if entry.strip()
        ]
        if not entries:
            return None
        return entries[-min(self.trusted_proxies, len(entries))]

    def _key(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            if self.ipv6_prefix < 128:
                network = ipaddress.IPv6Network(
                    (int(address), self.ipv6_prefix), strict=False
                )
                return str(network)
        return str(address)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]`` or ``[::1]:443``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Refusal:
    """A connection refused at a per-client limit.

    Attributes:
        client: The client's key (an address, a network, ``"user 42"``).
        held: The connections the client holds (its limit or more).
        in_a_row: Refusals of this client since it last got a connection,
            this one included.
        log: Whether to log this refusal: the first of a row, then each
            one whose number is a power of ten.
    """

    client: str
    held: int
    in_a_row: int
    log: bool


class ClientCounter:
    """Count the connections of each client against one limit.

    Only clients holding connections take memory: a client's entry goes
    with its last connection.

    Args:
        limit: Most connections one client may hold.
    """

    __slots__ = ("_held", "_refused", "limit")

    def __init__(self, limit: int) -> None:
        if type(limit) is not int or limit < 1:
            raise ValueError(f"Expected a limit >= 1, got {limit!r}.")
        self.limit = limit
        self._held: dict[str, int] = {}
        self._refused: dict[str, int] = {}

    def __len__(self) -> int:
        """Return how many clients hold connections."""
        return len(self._held)

    def held(self, client: str) -> int:
        """Return how many connections ``client`` holds."""
        return self._held.get(client, 0)

    def open(self, client: str) -> Refusal | None:
        """Count a new connection of ``client``, or refuse it at the limit.

        Returns:
            ``None`` when the connection is counted (the caller must
            :meth:`close` it once), else the :class:`Refusal`.
        """
        held = self._held.get(client, 0)
        if held >= self.limit:
            in_a_row = self._refused.get(client, 0) + 1
            self._refused[client] = in_a_row
            return Refusal(client, held, in_a_row, worth_logging(in_a_row))
        self._held[client] = held + 1
        self._refused.pop(client, None)
        return None

    def close(self, client: str) -> None:
        """Count one connection of ``client`` fewer."""
        held = self._held.get(client, 0) - 1
        if held > 0:
            self._held[client] = held
        else:
            self._held.pop(client, None)
            self._refused.pop(client, None)


def worth_logging(in_a_row: int) -> bool:
    """Return whether the ``in_a_row``-th refusal in a row is logged (1, 10, 100...)."""
    while in_a_row % 10 == 0:
        in_a_row //= 10
    return in_a_row == 1
