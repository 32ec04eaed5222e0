"""A stream consumer whose clients can be present on streams.

A client subscribes to ``presence:<stream>`` to be a member of
``<stream>`` and to see its members: the subscribe is allowed when
:meth:`~PresenceConsumer.authorize_stream` allows ``<stream>`` itself and
:meth:`~PresenceConsumer.tracks_presence` says it has presence. The
connection is then a connection of the member
:meth:`~PresenceConsumer.presence_member` names, until it unsubscribes or
closes (and the grace period is over). The presence stream's publications
are diffs; the request ``presence.members`` answers the snapshot.

A client of the HTTP transports is one connection, ``http/<client
id>/<stream>`` on every process, while one of its listening requests (an
event stream or a long-poll) is open, and the grace period after (the
consumer is a :class:`~django_realtime.streams.http.shell.ClientFollower`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from django_realtime.exceptions import RequestError
from django_realtime.ops.logs import printable
from django_realtime.presence.api import get_tracker
from django_realtime.presence.model import (
    InvalidMemberInfo,
    encode_info,
    presence_stream,
    tracked_stream,
)
from django_realtime.presence.tracker import SnapshotReply
from django_realtime.streams.consumer import StreamConsumer

__all__ = ["PresenceConsumer"]

logger = logging.getLogger("django_realtime.presence")


class PresenceConsumer(StreamConsumer):
    """A :class:`~django_realtime.streams.StreamConsumer` with presence.

    Override :meth:`tracks_presence` (no stream has presence by default)
    and, to change what others see of a member, :meth:`presence_member`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Presence stream -> this connection's id with the tracker.
        self._presence: dict[str, str] = {}
        self._can_track = False
        # Over the HTTP transports: the client's id and streams, and the
        # members (presence stream -> stream, key, info) it may join.
        self._http_client: str | None = None
        self._http_streams: frozenset[str] = frozenset()
        self._http_members: dict[str, tuple[str, str, str]] = {}

    def tracks_presence(self, stream: str) -> bool:
        """Return whether ``stream`` has presence; override (default: none)."""
        return False

    def presence_member(self, stream: str) -> tuple[str, Any] | None:
        """Return this connection's member key and public info on ``stream``.

        The default names a logged-in user by its primary key, with info
        ``{"id": pk, "username": ...}``. ``None`` (the default for
        anonymous users): the connection sees the members without being one.
        The info must encode as JSON within ``REALTIME["PRESENCE"]
        ["MAX_INFO_BYTES"]``, or the subscribe is refused and the reason
        logged as an error.
        """
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return None
        return str(user.pk), {"id": user.pk, "username": user.get_username()}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the consumer; its connections leave presence when it ends."""
        # Only a WebSocket consumer knows when its client is gone.
        self._can_track = True
        try:
            await super().__call__(scope, receive, send)
        finally:
            tracker = get_tracker()
            for conn in self._presence.values():
                tracker.leave(conn)
            self._presence.clear()

    def _call_hook(self, name: str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        if name == "authorize_stream" and tracked_stream(args[0]) is not None:
            return self._authorize_presence(args[0])
        return super()._call_hook(name, *args, **kwargs)

    async def _authorize_presence(self, name: str) -> bool:
        stream = tracked_stream(name)
        assert stream is not None
        if not await super()._call_hook("authorize_stream", stream):
            return False
        if not await super()._call_hook("tracks_presence", stream):
            logger.debug("Refused %s: %s has no presence.", printable(name), stream)
            return False
        member = await super()._call_hook("presence_member", stream)
        if member is None or not (self._can_track or self._http_client):
            return True
        key, info = member
        tracker = get_tracker()
        try:
            text = encode_info(info, tracker.options.max_info_bytes)
        except InvalidMemberInfo as exc:
            logger.error(
                "Refused presence on %s for %s: %s",
                printable(stream),
                printable(str(key)),
                exc,
            )
            return False
        if self._can_track:
            self._presence[name] = await tracker.join(stream, str(key), text)
        else:
            # A member while it listens (http_listening), not for a POST.
            self._http_members[name] = (stream, str(key), text)
        return True

    def http_client(self, client_id: str, streams: tuple[str, ...]) -> None:
        """Note the HTTP client this request serves (the transports' hook)."""
        self._http_client = client_id
        self._http_streams = frozenset(streams)

    async def http_listening(self) -> None:
        """Join the presence the client's listening request subscribes to."""
        tracker = get_tracker()
        for name, (stream, key, text) in self._http_members.items():
            conn = f"http/{self._http_client}/{stream}"
            self._presence[name] = await tracker.join(stream, key, text, conn=conn)

    def http_listened(self) -> None:
        """Leave (after the grace period) as the listening request ends."""
        tracker = get_tracker()
        for conn in self._presence.values():
            tracker.leave(conn)
        self._presence.clear()

    async def receive_json(self, content: Any) -> None:
        """Handle one protocol frame; an unsubscribe from presence leaves it."""
        await super().receive_json(content)
        if isinstance(content, dict) and content.get("kind") == "unsubscribe":
            name = content.get("stream")
            if isinstance(name, str) and name not in self.stream_subscriptions:
                conn = self._presence.pop(name, None)
                if conn is not None:
                    get_tracker().leave(conn)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        """Serialise ``content``; a snapshot's reply reuses its shared text."""
        if type(content) is dict and type(content.get("data")) is SnapshotReply:
            frame_id = content.get("id")
            if content.get("kind") == "reply" and type(frame_id) is int:
                snapshot = content["data"].encoded
                return f'{{"kind":"reply","id":{frame_id},"data":{snapshot}}}'
        return super().encode_json(content)

    async def request_presence_members(self, data: Any) -> dict[str, Any]:
        """Answer ``presence.members``: the snapshot of a stream's members.

        ``data`` is ``{"stream": "<stream>"}``; the connection must be
        subscribed to ``presence:<stream>``. The reply is ``{"stream",
        "version", "members"}`` (``docs/reference/streams-protocol.rst``).
        """
        stream = data.get("stream") if isinstance(data, dict) else None
        if not isinstance(stream, str) or (
            presence_stream(stream) not in self.stream_subscriptions
            and presence_stream(stream) not in self._http_streams
        ):
            raise RequestError(
                "not_subscribed",
                f'Expected {{"stream": ...}} of a stream whose presence this '
                f"connection subscribed to, got {printable(repr(data))[:200]}.",
            )
        return await get_tracker().snapshot(stream)
