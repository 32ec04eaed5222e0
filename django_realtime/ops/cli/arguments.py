"""Read the arguments of ``manage.py realtime``: pure functions, no I/O.

Each function returns the value it checked or raises
:class:`~django.core.management.base.CommandError` with
:data:`USAGE_ERROR` as its exit code and a message that says what was
expected and what arrived.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.management.base import CommandError

from django_realtime.ops.logs import printable
from django_realtime.streams.positions import Position, validate_stream_name

__all__ = [
    "FAILED",
    "USAGE_ERROR",
    "format_position",
    "local_host",
    "parse_payload",
    "parse_position",
    "stream_name",
    "websocket_address",
]

#: The exit code of a refusal or a failure: the server, the application or
#: the store said no, or could not be reached.
FAILED = 1
#: The exit code of an argument that is not valid (argparse's own code).
USAGE_ERROR = 2


def stream_name(value: str) -> str:
    """Return ``value`` if it is a valid stream name.

    Raises:
        CommandError: it is not (exit code :data:`USAGE_ERROR`).
    """
    try:
        return validate_stream_name(value)
    except ValueError as exc:
        raise CommandError(str(exc), returncode=USAGE_ERROR) from None


def format_position(position: Position) -> str:
    """Return ``position`` as ``--from`` takes it: ``EPOCH:OFFSET``."""
    return f"{position.epoch}:{position.offset}"


def parse_position(value: str) -> Position:
    """Return the position written ``EPOCH:OFFSET`` (as :func:`format_position`).

    The offset is what follows the last colon, so an epoch may hold colons.

    Raises:
        CommandError: ``value`` is not of that form (exit code
            :data:`USAGE_ERROR`).
    """
    epoch, colon, offset = value.rpartition(":")
    if not colon or not epoch or not offset.isdigit():
        raise CommandError(
            "Expected a position as EPOCH:OFFSET (as tail prints it, such as "
            f"9f3a0c21:41), got {printable(repr(value))}.",
            returncode=USAGE_ERROR,
        )
    return Position(epoch, int(offset))


def parse_payload(text: str) -> Any:
    """Return the JSON value ``text`` holds.

    Raises:
        CommandError: ``text`` is not JSON (exit code :data:`USAGE_ERROR`);
            the message says where it stops being JSON.
    """
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(
            f'Expected the payload as JSON text, such as \'{{"type": "note"}}\' '
            f"(quote it for the shell), got {printable(repr(text))}: {exc}.",
            returncode=USAGE_ERROR,
        ) from None


def websocket_address(url: str) -> tuple[str, str]:
    """Return the WebSocket URL of ``url`` and the origin of its own site.

    ``http://`` becomes ``ws://`` and ``https://`` ``wss://``; ``ws://`` and
    ``wss://`` stay. The origin is the one a page of that site would send
    (``http://host:port`` for ``ws://host:port/path``), which Django's
    origin rules (:class:`~django_realtime.security.AllowedHostsOriginValidator`)
    accept when the host is in ``ALLOWED_HOSTS``.

    Raises:
        CommandError: ``url`` is not an absolute ``ws``, ``wss``, ``http``
            or ``https`` URL (exit code :data:`USAGE_ERROR`).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise CommandError(
            f"Expected a URL, got {printable(repr(url))}: {exc}.",
            returncode=USAGE_ERROR,
        ) from None
    schemes = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
    scheme = schemes.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise CommandError(
            "Expected a URL such as ws://127.0.0.1:8000/ws/chat/lobby/ (http:// "
            f"and https:// are converted), got {printable(repr(url))}.",
            returncode=USAGE_ERROR,
        )
    address = urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
    origin = f"{'https' if scheme == 'wss' else 'http'}://{parts.netloc}"
    return address, origin


def local_host(allowed_hosts: Sequence[str]) -> str:
    """Return a host name that ``allowed_hosts`` (as ``ALLOWED_HOSTS``) accepts.

    The first name written in full, or the domain of the first
    ``".example.com"`` pattern; ``"localhost"`` when there is only ``"*"``
    (or nothing).
    """
    for pattern in allowed_hosts:
        name = pattern.lstrip(".")
        if name and name != "*":
            return name
    return "localhost"
