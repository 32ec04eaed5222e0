"""What the HTTP stream transports read and write, apart from the frames.

Pure: parse a ``POST`` body and a resume's positions, encode error bodies
and server-sent events, and turn the answers of a resume's own subscribes
into what the client is told (:func:`resume_frame`). The frames themselves
are the stream protocol's (:mod:`django_realtime.streams.protocol`).
"""

from __future__ import annotations

import json
from typing import Any

from django_realtime.exceptions import RealtimeError
from django_realtime.ops.logs import printable
from django_realtime.streams.positions import Position
from django_realtime.streams.protocol import (
    MAX_EPOCH_LENGTH,
    FrameError,
    lost_frame,
    parse_frame,
)

__all__ = [
    "HttpRefusal",
    "error_body",
    "parse_body",
    "parse_positions",
    "resume_frame",
    "resumed",
    "sse_event",
]


class HttpRefusal(RealtimeError):
    """A request the HTTP transports refuse, with its status and error code."""

    def __init__(
        self, status: int, code: str, message: str, *, close_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close_code = close_code

    def body(self) -> bytes:
        """Return the JSON error body."""
        return error_body(self.code, self.message, self.close_code)


def error_body(code: str, message: str, close_code: int | None = None) -> bytes:
    """Return the JSON body of a refused request (with a ``close_code``, if any)."""
    body: dict[str, Any] = {"error": code, "message": message}
    if close_code is not None:
        body["close_code"] = close_code
    return json.dumps(body).encode()


def parse_body(body: bytes, max_size: int) -> Any:
    """Return the client frame a ``POST`` body holds (decoded JSON).

    Raises:
        HttpRefusal: ``too_large`` (413) over ``max_size`` bytes;
            ``bad_body`` (400) for a body that is not a JSON object.
    """
    if len(body) > max_size:
        raise HttpRefusal(
            413,
            "too_large",
            f"Expected a body of at most {max_size} bytes, got {len(body)}.",
        )
    try:
        content = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpRefusal(
            400,
            "bad_body",
            f"Expected one JSON frame, got text that is not JSON ({exc}).",
        ) from None
    if type(content) is not dict:
        raise HttpRefusal(
            400,
            "bad_body",
            f"Expected one JSON object (a frame), got {printable(repr(content))}.",
        )
    return content


def parse_positions(
    text: str | None, streams: tuple[str, ...]
) -> dict[str, Position | None]:
    """Return the resume position of each of ``streams`` from ``text``.

    ``text`` is the ``positions`` query parameter: a JSON object mapping
    stream names to ``[epoch, offset]`` (or ``null``: no position). A
    stream of ``streams`` it leaves out resumes from no position.

    Raises:
        HttpRefusal: ``bad_positions`` (400) for text that is not such an
            object; ``not_subscribed`` (409) for a stream that is not one
            of ``streams``.
    """
    positions: dict[str, Position | None] = dict.fromkeys(streams)
    if not text:
        return positions
    try:
        content = json.loads(text)
    except ValueError:
        content = None
    if type(content) is not dict:
        raise HttpRefusal(
            400,
            "bad_positions",
            'Expected "positions" to be a JSON object of stream names to '
            f"[epoch, offset], got {printable(repr(text))}.",
        )
    for stream, value in content.items():
        if stream not in positions:
            raise HttpRefusal(
                409,
                "not_subscribed",
                f"Not subscribed to {printable(repr(stream))}: subscribe with a "
                "POST first.",
            )
        if value is None:
            continue
        if (
            type(value) is not list
            or len(value) != 2
            or type(value[0]) is not str
            or len(value[0]) > MAX_EPOCH_LENGTH
            or type(value[1]) is not int
        ):
            raise HttpRefusal(
                400,
                "bad_positions",
                f"Expected the position of {stream!r} to be [epoch, offset] "
                f"(an epoch of at most {MAX_EPOCH_LENGTH} characters), got "
                f"{printable(repr(value))}.",
            )
        positions[stream] = Position(value[0], value[1])
    return positions


def resume_frame(frame_id: int, stream: str, since: Position | None) -> dict[str, Any]:
    """Return the ``subscribe`` frame a resume of ``stream`` gives its session.

    Raises:
        HttpRefusal: ``bad_positions`` (400): the frame is not valid.
    """
    frame: dict[str, Any] = {"kind": "subscribe", "id": frame_id, "stream": stream}
    if since is not None:
        frame["since"] = {"epoch": since.epoch, "offset": since.offset}
    try:
        parse_frame(frame)
    except FrameError as exc:
        raise HttpRefusal(400, "bad_positions", exc.message) from None
    return frame


def resumed(frame: dict[str, Any], since: Position | None) -> dict[str, Any] | None:
    """Return what the client is told of the answer ``frame`` to a resume.

    A resume that recovered everything after ``since``, or had no
    ``since``, tells nothing: the publications follow. One that could not
    recover tells a ``lost`` frame at the stream's position, with the
    reason. A refusal (``forbidden``, say) is told as it is, with the
    stream named.
    """
    if frame.get("kind") == "subscribed":
        if frame.get("recovered") or since is None:
            return None
        position = Position(frame["epoch"], frame["offset"])
        return lost_frame(frame["stream"], position, frame["reason"])
    return frame


def sse_event(data: str, event: str | None = None) -> bytes:
    """Return one server-sent event of ``data`` (one line of JSON text)."""
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {data}\n\n".encode()
