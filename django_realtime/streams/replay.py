"""What a history read sends a subscriber: its start, or a catch-up.

Pure: each function takes what the store read and returns the parts to
send: frames (JSON text, by the given ``encode``) and the publications
replayed (:attr:`~.positions.Publication.frame` is their frame, unless the
subscription has a filter), with the subscription's
:class:`~django_realtime.streams.cursor.Cursor` moved past them. A
subscriber is told of history it cannot be sent, never left with a silent
gap: the ``subscribed`` frame says whether a resume was recovered, and a
``lost`` frame comes before what follows a loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django_realtime.ops.logs import printable
from django_realtime.streams.cursor import CatchUp, Cursor
from django_realtime.streams.positions import History, Position, Publication
from django_realtime.streams.protocol import lost_frame, subscribed_frame

__all__ = ["Part", "catch_up_frames", "start_frames"]

logger = logging.getLogger("django_realtime.streams")

Encode = Callable[[Any], str]

#: What a read sends: a frame (JSON text), or a publication.
Part = str | Publication


def start_frames(
    frame_id: int, since: Position | None, history: History, encode: Encode
) -> tuple[Cursor, list[Part]]:
    """Return the cursor of a subscription read from ``since``, and its frames.

    The frames are the ``subscribed`` answer to the frame ``frame_id``,
    then the replay.
    """
    cursor, begin = Cursor.start(history, since)
    frame = subscribed_frame(
        frame_id,
        history.stream,
        begin.position,
        begin.recovered,
        begin.reason,
        len(begin.replay),
    )
    if since is not None and not begin.recovered:
        logger.info(
            "Could not resume %s from %s:%d (%s).",
            history.stream,
            printable(since.epoch),
            since.offset,
            begin.reason,
        )
    return cursor, [encode(frame), *begin.replay]


def catch_up_frames(
    cursor: Cursor,
    history: History,
    announced: Publication | None,
    encode: Encode,
) -> list[Part]:
    """Return the frames of a catch-up read from ``cursor``'s position.

    ``announced`` is the announcement that showed a gap, if one did: it is
    placed after the read.
    """
    frames = _frames(history.stream, cursor.catch_up(history), encode)
    if announced is not None:
        frames += _frames(history.stream, cursor.settle(announced), encode)
    return frames


def _frames(stream: str, result: CatchUp, encode: Encode) -> list[Part]:
    frames: list[Part] = []
    if result.lost is not None and result.position is not None:
        logger.warning(
            "Lost history of %s up to %s:%d (%s): the client was told.",
            stream,
            result.position.epoch,
            result.position.offset,
            result.lost,
        )
        # The lost frame names the position before what follows it.
        position = result.position
        if result.publications:
            first = result.publications[0]
            position = Position(first.epoch, first.offset - 1)
        frames.append(encode(lost_frame(stream, position, result.lost)))
    frames.extend(result.publications)
    return frames
