"""Who is in a room: the consumer of the room page's "online" badge.

Served on the topic ``online/<room>`` of the page's multiplexed socket
(``example_project/chat/routing.py``), beside the room's own stream. Each
open page is one consumer in the group ``online.<room>``; a page that
arrives tells the group, the others answer it on its channel, and a page
that leaves tells the group again. Each consumer sends its page, on every
change, ``{"online": ["alice", "bob"]}``: the names of the users with the
room open, each once however many pages they have.

A page whose process dies without a disconnect stays listed until the
other pages reload: a badge, not an audit log.
"""

from __future__ import annotations

from typing import Any

from django_realtime.consumers import AsyncJsonWebsocketConsumer

__all__ = ["OnlineConsumer"]


class OnlineConsumer(AsyncJsonWebsocketConsumer):
    """Keep a room page told who else has the room open."""

    room_group = ""
    user_name = ""

    async def connect(self) -> None:
        """Join the room's group and announce this page; anonymous users get 4003."""
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(4003, "log in first")
            return
        self.user_name = user.get_username()
        self.room_group = "online." + self.scope["url_route"]["kwargs"]["room_name"]
        # channel -> user name of every page with the room open.
        self.here: dict[str, str] = {self.channel_name: self.user_name}
        await self.accept()
        await self.channel_layer.group_add(self.room_group, self.channel_name)
        await self.channel_layer.group_send(
            self.room_group,
            {
                "type": "online.join",
                "channel": self.channel_name,
                "user": self.user_name,
            },
        )
        await self._show()

    async def disconnect(self, code: int) -> None:
        """Leave the room's group and tell the other pages."""
        if not self.room_group:
            return
        await self.channel_layer.group_discard(self.room_group, self.channel_name)
        await self.channel_layer.group_send(
            self.room_group, {"type": "online.leave", "channel": self.channel_name}
        )

    async def online_join(self, message: dict[str, Any]) -> None:
        """A page arrived: list it and answer it with this page's user."""
        if message["channel"] == self.channel_name:
            return
        self.here[message["channel"]] = message["user"]
        await self.channel_layer.send(
            message["channel"],
            {
                "type": "online.here",
                "channel": self.channel_name,
                "user": self.user_name,
            },
        )
        await self._show()

    async def online_here(self, message: dict[str, Any]) -> None:
        """A page that was there answered this page's arrival."""
        self.here[message["channel"]] = message["user"]
        await self._show()

    async def online_leave(self, message: dict[str, Any]) -> None:
        """A page left."""
        if self.here.pop(message["channel"], None) is not None:
            await self._show()

    async def _show(self) -> None:
        await self.send_json({"online": sorted(set(self.here.values()))})
