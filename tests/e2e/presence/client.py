"""A presence client over a real WebSocket, applying diffs as realtime.js does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["Member", "Watcher"]


class Member:
    """A connection that is a member of one stream."""

    def __init__(self, url: str, user: str, stream: str) -> None:
        self.url = f"{url}/ws/?user={user}"
        self.stream = stream
        self.ws: ClientConnection | None = None

    async def open(self) -> None:
        self.ws = await connect(self.url, open_timeout=10)
        await self.ws.send(
            json.dumps(
                {"kind": "subscribe", "id": 1, "stream": "presence:" + self.stream}
            )
        )
        while json.loads(await self.ws.recv()).get("id") != 1:
            pass

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class Watcher(Member):
    """A member that keeps the stream's members: snapshot, then diffs."""

    def __init__(self, url: str, user: str, stream: str) -> None:
        super().__init__(url, user, stream)
        self.version = 0
        self.members: dict[str, Any] = {}
        self.versions: dict[str, int] = {}
        self.leaves: list[str] = []
        self._pending: list[dict[str, Any]] = []
        self._snapshot = False

    async def open(self) -> None:
        await super().open()
        assert self.ws is not None
        await self.ws.send(
            json.dumps(
                {
                    "kind": "request",
                    "id": 2,
                    "type": "presence.members",
                    "data": {"stream": self.stream},
                }
            )
        )
        while not self._snapshot:
            await self._read()

    async def _read(self) -> None:
        assert self.ws is not None
        frame = json.loads(await self.ws.recv())
        if frame.get("kind") == "publication":
            if self._snapshot:
                self._apply(frame["data"])
            else:
                self._pending.append(frame["data"])
        elif frame.get("kind") == "reply" and frame.get("id") == 2:
            data = frame["data"]
            self.version = data["version"]
            self.members = data["members"]
            self.versions = {k: r["v"] for k, r in self.members.items()}
            self._snapshot = True
            for diff in self._pending:
                self._apply(diff)

    def _apply(self, data: dict[str, Any]) -> None:
        for key, record in data["joins"].items():
            if record["v"] > max(self.version, self.versions.get(key, 0)):
                self.members[key] = record
                self.versions[key] = record["v"]
        for key, version in data["leaves"].items():
            if version > max(self.version, self.versions.get(key, 0)):
                self.members.pop(key, None)
                self.versions[key] = version
                self.leaves.append(key)

    async def until(self, keys: set[str], timeout: float) -> None:  # noqa: ASYNC109
        """Read until the members are exactly ``keys``."""

        async def wait() -> None:
            while set(self.members) != keys:
                await self._read()

        await asyncio.wait_for(wait(), timeout)
