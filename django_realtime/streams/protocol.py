"""The stream protocol's frames: parse what clients send, build what they get.

The protocol is specified in ``docs/reference/streams-protocol.rst``. This
module is pure: :func:`parse_frame` turns a decoded JSON value into one of
the frame classes or raises :class:`FrameError`; the ``*_frame`` functions
build the server's frames as dicts, ready to encode as JSON.

Client values quoted in error messages are cut to
:data:`~django_realtime.ops.logs.EXCERPT_LIMIT` characters (:func:`excerpt`),
so an error frame is never much bigger than its fixed text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django_realtime.consumers.websocket import CLOSE_TOO_SLOW
from django_realtime.ops.logs import printable
from django_realtime.streams.positions import Position, validate_stream_name

__all__ = [
    "CLOSE_STREAMING_FAILED",
    "CLOSE_TOO_SLOW",
    "MAX_EPOCH_LENGTH",
    "MAX_TYPE_LENGTH",
    "FrameError",
    "Ping",
    "Request",
    "Subscribe",
    "Unsubscribe",
    "encode_frame",
    "error_frame",
    "excerpt",
    "lost_frame",
    "parse_frame",
    "subscribed_frame",
]

#: The close code when the history store keeps failing: the client reconnects
#: and resumes. (1011 says the same, but daphne cannot send it.)
CLOSE_STREAMING_FAILED = 4011

# CLOSE_TOO_SLOW (4008), the code every consumer closes a slow client with,
# closes a client that does not keep up with its streams (the "close"
# slow-client policy): it reconnects and resumes from history.

#: Most characters of a request's ``type``.
MAX_TYPE_LENGTH = 100
#: Most characters of the ``epoch`` of a resume position.
MAX_EPOCH_LENGTH = 100

_REQUEST_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")


def excerpt(value: Any) -> str:
    """Return ``repr(value)`` for an error message: escaped and cut short."""
    return printable(repr(value))


class FrameError(Exception):
    """A client frame that is refused, and the error frame that says why."""

    def __init__(self, frame_id: int | None, code: str, message: str) -> None:
        super().__init__(message)
        self.id = frame_id
        self.code = code
        self.message = message

    def frame(self) -> dict[str, Any]:
        """Return the ``error`` frame for the client."""
        return error_frame(self.id, self.code, self.message)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``subscribe``: start (or resume from ``since``) a stream."""

    id: int
    stream: str
    since: Position | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``unsubscribe``: stop a stream."""

    id: int
    stream: str


@dataclass(frozen=True, slots=True)
class Request:
    """``request``: call the consumer's handler for ``type`` with ``data``."""

    id: int
    type: str
    data: Any


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``: answered with ``pong``."""

    id: int


Frame = Subscribe | Unsubscribe | Request | Ping


def _is_int(value: Any) -> bool:
    return type(value) is int


def _stream(frame_id: int, content: dict[str, Any]) -> str:
    try:
        return validate_stream_name(content.get("stream"))
    except ValueError as exc:
        raise FrameError(frame_id, "bad_frame", str(exc)) from None


def _since(frame_id: int, value: Any) -> Position | None:
    if value is None:
        return None
    if (
        type(value) is not dict
        or type(value.get("epoch")) is not str
        or not _is_int(value.get("offset"))
    ):
        raise FrameError(
            frame_id,
            "bad_frame",
            'Expected "since" to be {"epoch": <string>, "offset": <integer>}, '
            f"got {excerpt(value)}.",
        )
    if len(value["epoch"]) > MAX_EPOCH_LENGTH:
        raise FrameError(
            frame_id,
            "bad_frame",
            f'Expected a "since" epoch of at most {MAX_EPOCH_LENGTH} characters, '
            f"got {len(value['epoch'])}.",
        )
    return Position(value["epoch"], value["offset"])


def parse_frame(content: Any) -> Frame:
    """Return the frame ``content`` (a decoded JSON value) is.

    Raises:
        FrameError: ``content`` is not a valid client frame.
    """
    if type(content) is not dict:
        raise FrameError(
            None,
            "bad_frame",
            f"Expected a JSON object with a 'kind', got {excerpt(content)}.",
        )
    frame_id = content.get("id")
    if not isinstance(frame_id, int) or isinstance(frame_id, bool):
        raise FrameError(
            None, "bad_frame", f"Expected an integer 'id', got {excerpt(frame_id)}."
        )
    kind = content.get("kind")
    if kind == "subscribe":
        return Subscribe(
            frame_id, _stream(frame_id, content), _since(frame_id, content.get("since"))
        )
    if kind == "unsubscribe":
        return Unsubscribe(frame_id, _stream(frame_id, content))
    if kind == "request":
        request_type = content.get("type")
        if (
            type(request_type) is not str
            or len(request_type) > MAX_TYPE_LENGTH
            or not _REQUEST_TYPE.fullmatch(request_type)
        ):
            raise FrameError(
                frame_id,
                "bad_frame",
                "Expected a request 'type' of dotted names (\"chat.post\"), at "
                f"most {MAX_TYPE_LENGTH} characters, got {excerpt(request_type)}.",
            )
        return Request(frame_id, request_type, content.get("data"))
    if kind == "ping":
        return Ping(frame_id)
    raise FrameError(
        frame_id,
        "bad_frame",
        "Expected 'kind' to be 'subscribe', 'unsubscribe', 'request' or 'ping', "
        f"got {excerpt(kind)}.",
    )


def subscribed_frame(
    frame_id: int,
    stream: str,
    position: Position,
    recovered: bool,
    reason: str | None,
    replayed: int,
) -> dict[str, Any]:
    """Return the ``subscribed`` frame."""
    frame: dict[str, Any] = {
        "kind": "subscribed",
        "id": frame_id,
        "stream": stream,
        "epoch": position.epoch,
        "offset": position.offset,
        "recovered": recovered,
        "replayed": replayed,
    }
    if not recovered:
        frame["reason"] = reason
    return frame


def lost_frame(stream: str, position: Position, reason: str) -> dict[str, Any]:
    """Return the ``lost`` frame: history up to ``position`` cannot be replayed."""
    return {
        "kind": "lost",
        "stream": stream,
        "epoch": position.epoch,
        "offset": position.offset,
        "reason": reason,
    }


def error_frame(frame_id: int | None, code: str, message: str) -> dict[str, Any]:
    """Return an ``error`` frame answering the frame ``frame_id``."""
    return {"kind": "error", "id": frame_id, "code": code, "message": message}


def encode_frame(frame: Any) -> str:
    """Encode a frame as compact JSON text."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
