"""A feed's collection as realtime.js keeps it, over a StreamClient, for tests."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.test import AsyncClient

from django_realtime.streams import Position
from django_realtime.testing import StreamClient
from tests.integration.feeds.bindings import application

__all__ = ["PASSWORD", "LiveCollection", "login", "open_collection"]

PASSWORD = "correct horse battery staple"
WAIT = 10.0


async def login(username: str, *, staff: bool = False) -> tuple[User, bytes]:
    """Create ``username``, log in over HTTP; return the user and cookie header."""
    user = await User.objects.acreate_user(username, password=PASSWORD)
    if staff:
        user.is_staff = True
        await user.asave(update_fields=["is_staff"])
    client = AsyncClient()
    assert await client.alogin(username=username, password=PASSWORD)
    return user, f"sessionid={client.cookies['sessionid'].value}".encode()


class LiveCollection:
    """The rows of one feed a client holds: its snapshot, then its events.

    Applies events as realtime.js does: ``enter`` and ``update`` set a row
    unless it holds a newer version, ``leave`` removes it.
    """

    def __init__(self, client: StreamClient, feed: str) -> None:
        self.client = client
        self.feed = feed
        self.stream = f"feed.{feed}"
        self.rows: dict[Any, dict[str, Any]] = {}
        self.applied = 0
        #: Every event applied, as (type, pk).
        self.log: list[tuple[str, Any]] = []

    async def open(self) -> dict[str, Any]:
        """Take a snapshot, then subscribe from its position; return the snapshot."""
        snapshot: dict[str, Any] = await self.client.request(
            "feed.snapshot", {"feed": self.feed}
        )
        self.rows = {row["pk"]: row for row in snapshot["rows"]}
        await self.client.subscribe(
            snapshot["stream"], Position(snapshot["epoch"], snapshot["offset"])
        )
        return snapshot

    async def resume(self) -> None:
        """Reconnect: say which rows are held, then resume the feed's stream."""
        since = self.client.positions[self.stream]
        await self.client.drop()
        await self.client.connect()
        await self.client.request(
            "feed.resume", {"feed": self.feed, "pks": sorted(self.rows)}
        )
        await self.client.subscribe(self.stream, since)

    async def events(self, count: int) -> list[dict[str, Any]]:
        """Wait for ``count`` more events; apply and return them."""
        received = await self.client.wait_for(
            self.stream, self.applied + count, timeout=WAIT
        )
        new = received[self.applied : self.applied + count]
        for event in new:
            self.apply(event)
        self.applied += count
        return new

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "recheck":
            for row in event["enter"]:
                self.rows[row["pk"]] = row
                self.log.append(("enter", row["pk"]))
            for pk in event["leave"]:
                self.rows.pop(pk, None)
                self.log.append(("leave", pk))
            return
        pk = event["pk"]
        self.log.append((kind, pk))
        if kind == "leave":
            self.rows.pop(pk, None)
            return
        held = self.rows.get(pk)
        if held is None or held["version"] <= event["row"]["version"]:
            self.rows[pk] = event["row"]


async def open_collection(
    cookie: bytes, feed: str
) -> tuple[LiveCollection, dict[str, Any]]:
    """Connect with ``cookie`` and open ``feed``; return it and its snapshot."""
    client = StreamClient(application(), "/ws/feeds/", [(b"cookie", cookie)])
    await client.connect()
    collection = LiveCollection(client, feed)
    snapshot = await collection.open()
    return collection, snapshot
