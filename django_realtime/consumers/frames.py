"""The WebSocket wire vocabulary of consumers: close codes and ASGI messages.

The close codes a consumer sends for bad input (the list, with what the
servers themselves refuse, is in ``docs/topics/hostile-input.rst``), the
builders of the ``websocket.accept``, ``websocket.send`` and
``websocket.close`` messages, and the size check of a client's message.

daphne (autobahn) refuses to send close codes other than 1000 and
3000-4999. There 1003, 1007 and 1009 become 4015, 4000 and 4013 (4000 plus
the HTTP status of the same meaning, as the package's other codes: 4003 is
already "login required"), and daphne sends 1011 itself.
"""

from __future__ import annotations

from django_realtime.ops.logs import printable
from django_realtime.types import Headers, Message

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNSUPPORTED_DATA",
    "DAPHNE_CLOSE_CODES",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "accept_message",
    "close_message",
    "over_limit",
    "send_message",
]

#: RFC 6455 close code: a binary frame to a consumer that takes text (JSON).
CLOSE_UNSUPPORTED_DATA = 1003
#: RFC 6455 close code: a text frame that is not JSON.
CLOSE_INVALID_PAYLOAD = 1007
#: RFC 6455 close code: a message over ``max_message_size``, or nested too deep.
CLOSE_MESSAGE_TOO_BIG = 1009
#: RFC 6455 close code: a handler raised.
CLOSE_INTERNAL_ERROR = 1011
#: The connection fell behind: its consumer was taken out of its groups for
#: not reading the layer in time (the same code as a slow stream client's).
CLOSE_TOO_SLOW = 4008

#: The default ``max_message_size``: 1 MiB, daphne's own limit per message.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024

#: What 1003, 1007 and 1009 become on daphne, which (through autobahn) sends
#: only 1000 and 3000-4999: 4000 plus the HTTP status of the same meaning
#: (415 Unsupported Media Type, 400 Bad Request, 413 Content Too Large).
DAPHNE_CLOSE_CODES = {
    CLOSE_UNSUPPORTED_DATA: 4015,
    CLOSE_INVALID_PAYLOAD: 4000,
    CLOSE_MESSAGE_TOO_BIG: 4013,
}


def over_limit(text: str | None, data: bytes | None, limit: int) -> str | None:
    """Return the size of a message over ``limit`` bytes, as words; else ``None``.

    Text is measured in UTF-8 bytes, as it was on the wire. A character is
    1 to 4 bytes, so only text of more than ``limit // 4`` characters is
    encoded to be measured, and text of more than ``limit`` characters not
    at all.
    """
    if text is None:
        size = len(data) if data is not None else 0
        return f"{size} bytes" if size > limit else None
    length = len(text)
    if length > limit:
        return f"at least {length} bytes"
    if length * 4 <= limit:
        return None
    # Lone surrogates reach here only from test tools; count, do not refuse.
    size = len(text.encode("utf-8", "surrogatepass"))
    return f"{size} bytes" if size > limit else None


def accept_message(
    subprotocol: str | None = None, headers: Headers | None = None
) -> Message:
    """Build a ``websocket.accept`` message."""
    message: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
    if headers:
        message["headers"] = list(headers)
    return message


def send_message(
    text_data: str | None = None, bytes_data: bytes | None = None
) -> Message:
    """Build a ``websocket.send`` message carrying text or bytes.

    Raises:
        ValueError: neither or both of ``text_data`` and ``bytes_data`` given.
    """
    if text_data is not None and bytes_data is None:
        return {"type": "websocket.send", "text": text_data}
    if bytes_data is not None and text_data is None:
        return {"type": "websocket.send", "bytes": bytes_data}
    # Either may be a client's frame sent back: show an excerpt of each.
    raise ValueError(
        "Expected exactly one of text_data or bytes_data, got "
        f"text_data={_excerpt(text_data)} and bytes_data={_excerpt(bytes_data)}."
    )


def _excerpt(value: str | bytes | None) -> str:
    if value is None:
        return "None"
    quote = "b'" if isinstance(value, bytes) else "'"
    return f"{quote}{printable(value)}'"


def close_message(code: int | bool | None = None, reason: str | None = None) -> Message:
    """Build a ``websocket.close`` message (``code=True`` means 1000)."""
    message: Message = {"type": "websocket.close"}
    if code is True:
        message["code"] = 1000
    elif code is not None and code is not False:
        message["code"] = code
    if reason:
        message["reason"] = reason
    return message
