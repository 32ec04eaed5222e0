"""The multiplexing envelope: topic frames on one WebSocket, with no I/O.

Every frame on a multiplexed socket belongs to one topic, or to the socket
(a ``ping``). A text frame is either a **data frame**, the topic's name, a
line feed and the payload verbatim (no JSON escaping on either side), or a
**control frame**, a JSON object with a ``"kind"`` (``open``, ``close``,
``error``, ``ping``, ``pong``), told apart by its first character ``{``
(which no topic name has). A binary frame carries one topic's binary
payload behind a short header. The format is in
``docs/reference/multiplex-protocol.rst``; this module parses what the
client sends (:func:`parse_text`, :func:`parse_binary`) and builds what the
server sends, and raises :exc:`EnvelopeError` for anything else.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django_realtime.ops.logs import printable

__all__ = [
    "BAD_ENVELOPE",
    "CLOSE",
    "FRAME",
    "OPEN",
    "PING",
    "PONG_FRAME",
    "TOPIC_NAME",
    "Envelope",
    "EnvelopeError",
    "binary_header",
    "check_topic",
    "close_frame",
    "data_prefix",
    "error_frame",
    "open_frame",
    "parse_binary",
    "parse_text",
]

#: Topic names: 1 to 200 ASCII letters, digits and ``_ . : @ = ~ + / -``.
TOPIC_NAME = re.compile(r"[A-Za-z0-9_.:@=~+/-]{1,200}")

OPEN = "open"
CLOSE = "close"
FRAME = "frame"
PING = "ping"
#: The kinds of a client's control frames.
_CLIENT_KINDS = (OPEN, CLOSE, PING)

#: The answer to a ``ping``: browsers cannot send WebSocket pings.
PONG_FRAME = '{"kind":"pong"}'

#: The error code of an envelope that is not valid.
BAD_ENVELOPE = "bad_envelope"

_dumps = json.JSONEncoder(ensure_ascii=True).encode

_raw_decode = json.JSONDecoder().raw_decode

#: What ends a data frame's topic name; the payload follows.
_DATA_SEPARATOR = "\n"


class EnvelopeError(ValueError):
    """A client's envelope is not valid; ``code`` and ``message`` say why.

    Attributes:
        topic: The topic it named, if it named a valid one, else ``None``.
        code: The error code for the client (``bad_envelope``, say).
        message: What was expected and what arrived, for people.
    """

    def __init__(self, code: str, message: str, topic: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.topic = topic


class Envelope:
    """One client envelope: ``kind`` for ``topic``, with its payload.

    Attributes:
        topic: The topic's name. In a ``frame`` it is a string but not
            checked against :data:`TOPIC_NAME`: the multiplexer looks it up
            among the open topics, whose names were checked at their open.
        kind: ``"open"``, ``"close"`` or ``"frame"``.
        text: A text frame's payload.
        data: A binary frame's payload.
        code: A close's code (``1000`` when the client gave none).
        reason: A close's reason (``""`` when the client gave none).
    """

    __slots__ = ("code", "data", "kind", "reason", "text", "topic")

    def __init__(
        self,
        topic: str,
        kind: str,
        text: str | None = None,
        data: bytes | None = None,
        code: int = 1000,
        reason: str = "",
    ) -> None:
        self.topic = topic
        self.kind = kind
        self.text = text
        self.data = data
        self.code = code
        self.reason = reason


def check_topic(topic: Any) -> str:
    """Return ``topic`` if it is a valid topic name.

    Raises:
        EnvelopeError: it is not (code ``bad_envelope``).
    """
    if type(topic) is not str or TOPIC_NAME.fullmatch(topic) is None:
        raise EnvelopeError(
            BAD_ENVELOPE,
            "Expected a topic of 1 to 200 ASCII letters, digits and "
            f"'_ . : @ = ~ + / -', got {printable(repr(topic))}.",
        )
    return topic


def parse_text(text: str) -> Envelope:
    """Parse a client's text frame: a data frame or a JSON control frame.

    Raises:
        EnvelopeError: it is not a valid envelope.
    """
    if text[:1] != "{":
        cut = text.find(_DATA_SEPARATOR)
        if cut > 0:
            # The topic is checked by its lookup (see Envelope).
            return Envelope(text[:cut], FRAME, text[cut + 1 :])
        raise EnvelopeError(
            BAD_ENVELOPE,
            "Expected a data frame (the topic, a line feed, the payload) or a "
            f"JSON control frame, got {printable(repr(text[:200]))}.",
        )
    try:
        try:
            # raw_decode(): loads() without its two whitespace scans, for
            # the compact JSON clients send; anything else goes to loads().
            content, end = _raw_decode(text)
            if end != len(text):
                content = json.loads(text)
        except ValueError:
            content = json.loads(text)
    except (ValueError, RecursionError):
        raise EnvelopeError(
            BAD_ENVELOPE,
            f"Expected a JSON object, got invalid JSON: {printable(text[:200])}",
        ) from None
    if type(content) is not dict:
        raise EnvelopeError(
            BAD_ENVELOPE,
            f"Expected a JSON object, got {printable(repr(content)[:200])}.",
        )
    kind = content.get("kind")
    if kind == PING:
        return Envelope("", PING)
    topic = check_topic(content.get("topic"))
    if kind == OPEN:
        return Envelope(topic, OPEN)
    if kind == CLOSE:
        code = content.get("code", 1000)
        reason = content.get("reason", "")
        if type(code) is not int or not (code == 1000 or 3000 <= code <= 4999):
            raise EnvelopeError(
                BAD_ENVELOPE,
                "Expected a close 'code' of 1000 or 3000-4999, got "
                f"{printable(repr(code)[:50])}.",
                topic,
            )
        if type(reason) is not str or len(reason) > 123:
            raise EnvelopeError(
                BAD_ENVELOPE,
                "Expected a close 'reason' of at most 123 characters, got "
                f"{printable(repr(reason)[:200])}.",
                topic,
            )
        return Envelope(topic, CLOSE, code=code, reason=reason)
    raise EnvelopeError(
        BAD_ENVELOPE,
        f"Expected a 'kind' among {', '.join(_CLIENT_KINDS)}, "
        f"got {printable(repr(kind)[:50])}.",
        topic,
    )


def parse_binary(data: bytes) -> Envelope:
    """Parse a client's binary frame: a header byte, the topic, the payload.

    Raises:
        EnvelopeError: the header does not name a valid topic.
    """
    size = data[0] if data else 0
    try:
        topic = data[1 : 1 + size].decode("ascii")
    except UnicodeDecodeError:
        topic = ""
    if len(data) < 1 + size or TOPIC_NAME.fullmatch(topic) is None:
        raise EnvelopeError(
            BAD_ENVELOPE,
            "Expected a binary frame of a length byte, that many bytes of "
            f"topic name and the payload, got {printable(data[:40])}.",
        )
    return Envelope(topic, FRAME, data=data[1 + size :])


def data_prefix(topic: str) -> str:
    """Return the start of ``topic``'s data frames; the payload follows verbatim."""
    return topic + _DATA_SEPARATOR


def binary_header(topic: str) -> bytes:
    """Return the header of ``topic``'s binary frames; the payload follows."""
    name = topic.encode("ascii")
    return bytes((len(name),)) + name


def open_frame(topic: str) -> str:
    """Return the frame that tells the client ``topic`` is open."""
    return _dumps({"topic": topic, "kind": OPEN})


def close_frame(topic: str, code: int, reason: str = "") -> str:
    """Return the frame that tells the client ``topic`` ended with ``code``."""
    return _dumps({"topic": topic, "kind": CLOSE, "code": code, "reason": reason})


def error_frame(topic: str | None, code: str, message: str) -> str:
    """Return an error frame; ``topic`` is ``None`` when none could be named."""
    return _dumps({"topic": topic, "kind": "error", "code": code, "message": message})
