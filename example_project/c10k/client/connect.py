"""Open ``testecho`` connections: the TCP connection, then the opening handshake.

:class:`SourceAddresses` spreads many connections to one server over
loopback source addresses; :func:`connect` returns a
:class:`~example_project.c10k.client.connection.LoadConnection` once the
server has accepted it.
"""

# The timeout parameter is part of the agreed API (ASYNC109).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from example_project.c10k.client.connection import LoadConnection
from example_project.c10k.client.wire import request

__all__ = ["SourceAddresses", "connect"]

# Linux: choose the source port at connect() time, from the whole 4-tuple,
# rather than at bind() time; a bound source address then does not limit
# the connections to one per ephemeral port across all destinations.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class SourceAddresses:
    """Hand out loopback source addresses for many connections to one server.

    A client can open at most as many connections to one server address as
    there are ephemeral ports on one source address; spreading connections
    over 127.0.0.1, 127.0.0.2, ... lifts that limit (every address in
    127.0.0.0/8 is the loopback interface on Linux).

    Args:
        hosts: The source hosts to use in turn; ``None`` means 127.0.0.1 to
            127.0.0.254, as many as needed.
        per_host: How many connections to bind to a host before moving to
            the next. After the last host, the first is used again.
    """

    def __init__(self, hosts: Iterable[str] | None = None, per_host: int = 25_000):
        if per_host < 1:
            raise ValueError(f"Expected per_host >= 1, got {per_host}.")
        self.hosts = (
            [f"127.0.0.{last}" for last in range(1, 255)]
            if hosts is None
            else list(hosts)
        )
        if not self.hosts:
            raise ValueError("Expected at least one source host, got none.")
        self.per_host = per_host
        self.count = 0

    def next(self) -> tuple[str, int]:
        """Return the ``(host, 0)`` ``local_addr`` of the next connection."""
        index = self.count // self.per_host % len(self.hosts)
        self.count += 1
        return (self.hosts[index], 0)


async def _bound_socket(
    loop: asyncio.AbstractEventLoop, host: str, port: int, local_addr: tuple[str, int]
) -> socket.socket:
    try:
        ipaddress.ip_address(host)
        address: tuple[Any, ...] = (host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind(local_addr)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    origin: str | None = None,
    local_addr: tuple[str, int] | None = None,
    timeout: float = 10.0,
) -> LoadConnection:
    """Open a WebSocket connection to ``url`` and return it once accepted.

    Args:
        url: A ``ws://host:port/path?query`` URL.
        headers: Extra request headers, e.g. ``{"Cookie": "sessionid=..."}``.
        origin: The ``Origin`` header, if any.
        local_addr: The ``(host, port)`` to bind to, e.g.
            :meth:`SourceAddresses.next`; ``None`` lets the system choose.
        timeout: Seconds for the TCP connection and the server's 101 answer.

    Raises:
        HandshakeError: The server answered with another HTTP status.
        OSError: The TCP connection failed.
        TimeoutError: The handshake took longer than ``timeout``.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"Expected a ws://host[:port]/path URL, got {url!r}.")
    host, port = parts.hostname, parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16))
    loop = asyncio.get_running_loop()
    connection = LoadConnection(
        request(path, parts.netloc, key, origin, headers), key, loop
    )
    try:
        async with asyncio.timeout(timeout):
            if local_addr is None:
                await loop.create_connection(lambda: connection, host, port)
            else:
                sock = await _bound_socket(loop, host, port, local_addr)
                try:
                    await loop.create_connection(lambda: connection, sock=sock)
                except BaseException:
                    sock.close()
                    raise
            assert connection._handshake is not None
            await connection._handshake
    except BaseException:
        # Nobody will await the handshake now: settle it, so that a later
        # connection_lost does not leave an exception nobody retrieves.
        if connection._handshake is not None and not connection._handshake.done():
            connection._handshake.cancel()
        connection.abort()
        raise
    return connection
