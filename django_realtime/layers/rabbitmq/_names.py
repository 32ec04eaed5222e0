"""What the RabbitMQ layer calls things on the broker, and who owns a channel.

Pure functions of names. A process-local channel made by ``new_channel()``
carries its owner's process id (``specific.rmq.3f9a1c0e7b2d!4``), so any
process can tell which process queue its messages go to.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_URL",
    "PROCESS_ID_LENGTH",
    "broker_address",
    "channel_queue",
    "groups_exchange",
    "local_name",
    "now_ms",
    "owner_of",
    "process_queue",
    "sent_at",
]

#: The broker of a layer configured without ``url``.
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

#: Hex digits in a process id.
PROCESS_ID_LENGTH = 12

_MARK = "rmq."
_OWNED = re.compile(rf"(?:^|\.){re.escape(_MARK)}([0-9a-f]{{{PROCESS_ID_LENGTH}}})!")


def local_name(prefix: str, process_id: str, number: int) -> str:
    """Return the ``number``-th process-local channel name of ``process_id``."""
    return f"{prefix}{_MARK}{process_id}!{number}"


def owner_of(channel: str) -> str | None:
    """Return the process id in a process-local channel name, or ``None``.

    Names without ``!``, and ``!`` names not made by this layer, are normal
    channels: a queue of their own, read by any process.
    """
    bang = channel.find("!")
    if bang == -1:
        return None
    found = _OWNED.search(channel, 0, bang + 1)
    if found is None or found.end() != bang + 1:
        return None
    return found.group(1)


def process_queue(prefix: str, process_id: str) -> str:
    """Return the queue of one process's local channels and group memberships."""
    return f"{prefix}process.{process_id}"


def channel_queue(prefix: str, channel: str) -> str:
    """Return the queue of a normal channel."""
    return f"{prefix}channel.{channel}"


def groups_exchange(prefix: str) -> str:
    """Return the direct exchange that group messages are published to."""
    return f"{prefix}groups"


def broker_address(url: object) -> str:
    """Return the broker of an AMQP URL without its credentials, for messages.

    Raises:
        TypeError: ``url`` is not a string.
        ValueError: ``url`` is not an ``amqp://`` or ``amqps://`` URL with
            a host and a valid port.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be an AMQP URL string, got {url!r}.")
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError(
            "url must look like 'amqp://user:password@host:5672/vhost', got "
            f"one with scheme {parts.scheme!r} and host {parts.hostname!r}."
        )
    try:
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    except ValueError as error:
        raise ValueError(f"url has an invalid port: {error}") from error
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path or '/'}"


def now_ms() -> int:
    """Return the wall clock in whole milliseconds, for a message's headers.

    An integer, because AMQP tables carry Python floats as 32-bit floats,
    which round today's time by a minute.
    """
    return round(time.time() * 1000)


def sent_at(headers: Mapping[str, object]) -> float:
    """Return when a message was sent (wall-clock seconds), or now if untold."""
    value = headers.get("t")
    return value / 1000 if isinstance(value, int) else time.time()
