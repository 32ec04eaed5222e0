"""Held and on-commit sends, and the database, per topic of a multiplexed socket.

A topic's consumer saves a row and announces it inside a transaction, as
on a socket of its own: what it sends goes out after the commit, numbered
with the topic's own correlation id, and nothing goes out when its handler
fails and the transaction rolls back; the socket's other topics go on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import transaction

from django_realtime.consumers import WebsocketConsumer
from django_realtime.layers import get_channel_layer
from django_realtime.multiplex import multiplex
from django_realtime.testing import WebsocketCommunicator

from .consumers import Echo

pytestmark = pytest.mark.timeout(30)


def on(alias: str) -> Any:
    return pytest.mark.django_db(transaction=True, databases=[alias])


ALIASES = [
    pytest.param("default", id="sqlite", marks=on("default")),
    pytest.param(
        "postgres", id="postgresql", marks=[pytest.mark.postgres, on("postgres")]
    ),
]


class Poster(WebsocketConsumer):
    """Save a row and announce it, inside a transaction."""

    alias = "default"

    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        with transaction.atomic(using=self.alias):
            User.objects.using(self.alias).create(username=text_data)
            async_to_sync(self.channel_layer.group_send)(
                "posts", {"type": "post", "name": text_data}
            )
            self.send(text_data="saved")
            if text_data == "fail":
                raise RuntimeError("roll back")


async def drain(layer: Any, channel: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        try:
            seen.append(await asyncio.wait_for(layer.receive(channel), 0.2))
        except TimeoutError:
            return seen


@pytest.mark.parametrize("alias", ALIASES)
async def test_a_topics_sends_go_out_after_its_commit_and_never_after_a_rollback(
    alias: str,
) -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("posts", channel)
    app = multiplex({"post": Poster.as_asgi(alias=alias), "echo": Echo.as_asgi()})
    ws = WebsocketCommunicator(app, "/ws/", headers=[(b"x-request-id", b"req-9")])
    assert (await ws.connect())[0]
    for topic in ("echo", "post"):
        await ws.send_json_to({"topic": topic, "kind": "open"})
        assert (await ws.receive_json_from())["kind"] == "open"

    await ws.send_to(text_data="post\nalice")
    assert await ws.receive_from() == "post\nsaved"
    # The topic's id: the socket's, its number on the socket, its frame.
    assert await drain(layer, channel) == [
        {"type": "post", "name": "alice", "correlation_id": "req-9:2.1"}
    ]

    await ws.send_to(text_data="post\nfail")
    closed = await ws.receive_json_from()
    assert (closed["topic"], closed["kind"], closed["code"]) == ("post", "close", 1011)
    assert await drain(layer, channel) == []
    assert not await User.objects.using(alias).filter(username="fail").aexists()
    await ws.send_to(text_data="echo\non")
    assert await ws.receive_from() == "echo\non"
    await ws.disconnect()
