"""A stream's members as realtime.js keeps them, and users for in-process tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django_realtime.presence import PresenceConsumer
from django_realtime.testing import StreamClient

__all__ = ["Room", "User", "View", "as_user", "watch"]


@dataclass
class User:
    """Enough of a Django user for the consumer's hooks."""

    pk: int
    username: str
    is_authenticated: bool = True

    def get_username(self) -> str:
        return self.username


class Room(PresenceConsumer):
    """Rooms have presence; "secret.*" may not be read; "quiet.*" has none."""

    info_override: Any = None

    async def authorize_stream(self, stream: str) -> bool:
        return not stream.startswith("secret")

    def tracks_presence(self, stream: str) -> bool:
        return stream.startswith("room.") or stream.startswith("secret")

    def presence_member(self, stream: str) -> tuple[str, Any] | None:
        member = super().presence_member(stream)
        if member is not None and type(self).info_override is not None:
            return member[0], type(self).info_override
        return member


def as_user(app: Any, user: User | None) -> Any:
    """Return ``app`` with ``user`` in every scope (``None``: anonymous)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        who = user or User(0, "", is_authenticated=False)
        await app(dict(scope, user=who), receive, send)

    return wrapped


class View:
    """The members of one stream as a client keeps them.

    Diffs before the snapshot wait; then every change applies if its
    version is newer than the snapshot's and than the member's.
    """

    def __init__(self, client: StreamClient, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.version: int | None = None
        self.members: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.seen = 0
        self.diffs: list[dict[str, Any]] = []

    async def snapshot(self) -> None:
        reply = await self.client.request("presence.members", {"stream": self.stream})
        self.version = reply["version"]
        self.members = reply["members"]
        self.versions = {k: r["v"] for k, r in self.members.items()}
        self._catch_up()

    def _catch_up(self) -> None:
        received = self.client.received.get("presence:" + self.stream, [])
        for data in received[self.seen :]:
            self.diffs.append(data)
            self._apply(data)
        self.seen = len(received)

    def _apply(self, data: dict[str, Any]) -> None:
        assert self.version is not None
        for key, record in data["joins"].items():
            if record["v"] > max(self.version, self.versions.get(key, 0)):
                self.members[key] = record
                self.versions[key] = record["v"]
        for key, version in data["leaves"].items():
            if version > max(self.version, self.versions.get(key, 0)):
                self.members.pop(key, None)
                self.versions[key] = version

    async def until(self, names: set[str], timeout: float = 5) -> None:  # noqa: ASYNC109
        """Read diffs until the members are exactly ``names`` (by username)."""
        import asyncio

        async def wait() -> None:
            while self.names() != names:
                self.client._take(
                    await self.client.communicator.receive_json_from(timeout)
                )
                self._catch_up()

        self._catch_up()
        await asyncio.wait_for(wait(), timeout)

    async def drain(self, seconds: float) -> None:
        """Read whatever arrives for ``seconds``."""
        import asyncio

        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        ws = self.client.communicator
        while (left := end - loop.time()) > 0:
            if await ws.receive_nothing(left):
                break
            self.client._take(await ws.receive_json_from())
        self._catch_up()

    def names(self) -> set[str]:
        return {r["info"]["username"] for r in self.members.values()}


async def watch(app: Any, user: User | None, stream: str) -> View:
    """Connect as ``user``, subscribe to ``stream``'s presence; return the view."""
    client = StreamClient(as_user(app, user), "/ws/")
    await client.connect()
    await client.subscribe("presence:" + stream)
    view = View(client, stream)
    await view.snapshot()
    return view
