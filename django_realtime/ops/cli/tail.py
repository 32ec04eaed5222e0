"""``manage.py realtime tail``: what one user would receive on one stream.

:func:`tail` opens a WebSocket to the project's own ASGI application in
this process (:class:`~django_realtime.ops.cli.local.LocalSocket`), at the
path a client would use, with the session of a user logged in for the
occasion, and subscribes to the stream as ``realtime.js`` does. Every
middleware, the route, the consumer's ``connect()`` and its
``authorize_stream()`` decide, as for a browser: a stream the user may not
read is refused. The consumer reads the project's configured history
store, so the replay is what a client resuming from ``--from`` would get;
live publications arrive as the store announces them to this process (the
in-memory store hears only this process's own).

Each frame of the subscription (``subscribed``, ``publication``, ``lost``)
is written to the output as it was sent, one JSON text per line;
:class:`TailReader` decides, with no I/O, what each frame means: the
position to resume from, loss, refusal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import CommandError

from django_realtime.middleware.origin import HostRules
from django_realtime.ops.cli.arguments import (
    FAILED,
    format_position,
    local_host,
)
from django_realtime.ops.cli.local import LocalSocket, Refused, websocket_scope
from django_realtime.ops.cli.login import UserSession, open_session
from django_realtime.ops.cli.routes import default_stream_path
from django_realtime.ops.logs import printable
from django_realtime.routing import get_default_application
from django_realtime.streams.positions import Position
from django_realtime.streams.registry import get_stream_store
from django_realtime.streams.stores.memory import MemoryHistoryStore

__all__ = ["TailReader", "tail"]

#: The ``id`` of the one subscribe frame the tail sends.
SUBSCRIBE_ID = 1

Write = Callable[[str], None]


@dataclass
class _Said:
    """What to do with one frame: a line for the output and a note for people."""

    line: str | None = None
    note: str | None = None


class TailReader:
    """Follow the frames a connection gets for one subscription.

    Args:
        stream: The stream subscribed to.
        since: The position the subscription resumes from, if any.
        count: Stop after this many publications (``None``: never).
    """

    def __init__(self, stream: str, since: Position | None, count: int | None) -> None:
        self.stream = stream
        self.since = since
        self.count = count
        #: The position of the last message taken: where to resume from.
        self.position: Position | None = since
        #: Publications taken so far.
        self.publications = 0
        self.subscribed = False

    @property
    def done(self) -> bool:
        """Return whether ``count`` publications have been taken."""
        return self.count is not None and self.publications >= self.count

    def subscribe_frame(self) -> str:
        """Return the ``subscribe`` frame to send, as JSON text."""
        frame: dict[str, Any] = {
            "kind": "subscribe",
            "id": SUBSCRIBE_ID,
            "stream": self.stream,
        }
        if self.since is not None:
            frame["since"] = {"epoch": self.since.epoch, "offset": self.since.offset}
        return json.dumps(frame)

    def take(self, data: str | bytes) -> _Said:
        """Take one frame the connection received; return what to print.

        Raises:
            CommandError: the subscribe was answered with an ``error``
                (exit code :data:`~.arguments.FAILED`).
        """
        if isinstance(data, bytes):
            return _Said(note=f"A binary frame of {len(data)} bytes (not a stream's).")
        try:
            frame = json.loads(data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            return _Said(note=f"Another frame: {printable(data)}")
        kind = frame.get("kind")
        if kind == "error" and frame.get("id") == SUBSCRIBE_ID:
            raise CommandError(
                f"The consumer refused the subscription to {self.stream!r} "
                f"({frame.get('code')}): {frame.get('message')}",
                returncode=FAILED,
            )
        if frame.get("stream") != self.stream or kind not in (
            "subscribed",
            "publication",
            "lost",
        ):
            return _Said(note=f"Another frame: {printable(data)}")
        here = Position(str(frame.get("epoch")), int(frame.get("offset") or 0))
        if kind == "publication":
            self.position = here
            self.publications += 1
            return _Said(line=data)
        if kind == "lost":
            self.position = here
            return _Said(
                line=data,
                note=f"Lost messages of {self.stream} ({frame.get('reason')}): "
                f"going on from {format_position(here)}.",
            )
        return _Said(line=data, note=self._subscribed(frame, here))

    def _subscribed(self, frame: dict[str, Any], here: Position) -> str:
        self.subscribed = True
        if frame.get("recovered"):
            return (
                f"Subscribed to {self.stream}, newest {format_position(here)}: "
                f"replaying {frame.get('replayed')} after "
                f"{format_position(self.since or here)}."
            )
        self.position = here
        if self.since is None:
            return f"Subscribed to {self.stream} at {format_position(here)}."
        return (
            f"Subscribed to {self.stream}: history after "
            f"{format_position(self.since)} cannot be replayed "
            f"({frame.get('reason')}); going on from {format_position(here)}."
        )

    def resume_note(self) -> str | None:
        """Return how to resume from where the tail stopped (``None``: nowhere)."""
        if self.position is None:
            return None
        where = format_position(self.position)
        return f"Stopped at {where}: resume with --from {where}."


async def _follow(
    socket: LocalSocket, reader: TailReader, out: Write, note: Write, who: str
) -> None:
    try:
        await socket.open()
    except Refused as refused:
        code = "" if refused.code == 1000 else f", closed with {refused.code}"
        raise CommandError(
            f"The application refused the WebSocket handshake of {who} (a "
            f"browser would see HTTP 403{code}): the consumer's connect() "
            "refused this user, or the origin or the path was refused (see the "
            "log lines above, if any).",
            returncode=FAILED,
        ) from None
    try:
        await socket.send_text(reader.subscribe_frame())
        while not reader.done:
            said = reader.take(await socket.receive())
            if said.line is not None:
                out(said.line)
            if said.note is not None:
                note(said.note)
    except Refused as refused:
        reason = f" ({refused.reason})" if refused.reason else ""
        raise CommandError(
            f"The consumer closed the connection of {who} with code "
            f"{refused.code}{reason}.",
            returncode=FAILED,
        ) from None
    finally:
        await socket.close()


def tail(
    stream: str,
    *,
    since: Position | None,
    username: str | None,
    path: str | None,
    origin: str | None,
    count: int | None,
    out: Write,
    note: Write,
) -> None:
    """Print what ``username`` would receive on ``stream``, until Ctrl-C.

    Args:
        stream: The stream's name (already checked).
        since: Resume after this position; ``None``: new publications only.
        username: The user to connect as; ``None``: anonymous.
        path: The path to connect to; ``None``: the only route to a stream
            consumer in ``ASGI_APPLICATION``.
        origin: The ``Origin`` header; ``None``: ``http://`` and a host of
            ``ALLOWED_HOSTS``.
        count: Stop after this many publications (``None``: on Ctrl-C).
        out: Write one line of output (the frames).
        note: Write one line for people (positions, losses).

    Raises:
        CommandError: the user does not exist, no path was given and none
            can be found, or the application refused the connection or the
            subscription.
    """
    application = get_default_application()
    if path is None:
        path = default_stream_path(application)
    host = local_host(HostRules.from_settings().allowed_hosts)
    headers = {"origin": origin or f"http://{host}"}
    session: UserSession | None = None
    if username is not None:
        session = open_session(username)
        headers["cookie"] = session.cookie
    if isinstance(get_stream_store(), MemoryHistoryStore):
        note(
            "The stream store is in memory (MemoryHistoryStore): this tail sees "
            "only what this process publishes, not what the servers do. Use the "
            "SQLite or Redis store to watch them."
        )
    who = f"{username or 'an anonymous user'} to {path}"
    reader = TailReader(stream, since, count)
    socket = LocalSocket(application, websocket_scope(path, host, headers))
    try:
        asyncio.run(_follow(socket, reader, out, note, who))
    except KeyboardInterrupt:
        pass
    finally:
        if session is not None:
            session.close()
    resume = reader.resume_note()
    if resume is not None:
        note(resume)
