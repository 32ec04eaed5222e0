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

    def __init__(
        self, client: StreamClient, feed: str, view: dict[str, Any] | None = None
    ) -> None:
        self.client = client
        self.feed = feed
        #: The view followed: ``{"pk": 7}``, ``{"query": ..., "params": ...}``.
        self.view = view or {}
        #: Every row state applied, as (pk, version).
        self.versions: list[tuple[Any, int]] = []
        self.stream = f"feed.{feed}"
        self.rows: dict[Any, dict[str, Any]] = {}
        self.applied = 0
        #: Every event applied, as (type, pk).
        self.log: list[tuple[str, Any]] = []

    async def open(self) -> dict[str, Any]:
        """Take a snapshot, then subscribe from its position; return the snapshot."""
        snapshot: dict[str, Any] = await self.client.request(
            "feed.snapshot", {"feed": self.feed, **self.view}
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
            "feed.resume", {"feed": self.feed, "pks": sorted(self.rows), **self.view}
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
        held, row = self.rows.get(pk), event["row"]
        # As realtime.js: a state not newer than the one held is skipped.
        if held is None or held["version"] < row["version"]:
            self.rows[pk] = row
            self.versions.append((pk, row["version"]))


async def open_collection(
    cookie: bytes, feed: str, view: dict[str, Any] | None = None
) -> tuple[LiveCollection, dict[str, Any]]:
    """Connect with ``cookie``, open ``view`` of ``feed``; return it, its snapshot."""
    client = StreamClient(application(), "/ws/feeds/", [(b"cookie", cookie)])
    await client.connect()
    collection = LiveCollection(client, feed, view)
    snapshot = await collection.open()
    return collection, snapshot
