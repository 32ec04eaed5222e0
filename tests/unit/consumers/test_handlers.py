"""The handler lookup of a consumer class: what it caches, what it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from django_realtime.consumers import AsyncConsumer
from django_realtime.consumers.handlers import Handlers
from django_realtime.exceptions import InvalidMessageError


class Chat(AsyncConsumer):
    async def chat_message(self, message: dict[str, Any]) -> None:
        pass

    def chat_sync(self, message: dict[str, Any]) -> None:
        pass


def test_a_type_that_names_a_handler_is_cached_with_its_flavour() -> None:
    handlers = Handlers(Chat)
    assert handlers.lookup("chat.message") == ("chat_message", True)
    assert handlers.lookup("chat.sync") == ("chat_sync", False)
    assert handlers.entries == {
        "chat.message": ("chat_message", True),
        "chat.sync": ("chat_sync", False),
    }


@pytest.mark.parametrize(
    "kind", ["chat.missing", "._secret", "send", "dispatch", "", ["chat.message"]]
)
def test_a_type_that_names_no_handler_is_refused_and_not_cached(kind: Any) -> None:
    handlers = Handlers(Chat)
    with pytest.raises(InvalidMessageError):
        handlers.lookup(kind)
    assert handlers.entries == {}


def test_each_consumer_class_has_its_own_lookup() -> None:
    class Other(Chat):
        async def chat_message(self, message: dict[str, Any]) -> None:
            pass

    assert Chat._handlers is not Other._handlers
    assert Other._handlers.cls is Other


class Server(AsyncConsumer):
    async def websocket_receive(self, message: dict[str, Any]) -> None:
        pass


@pytest.mark.parametrize("times", [1, 2])
def test_a_layer_message_is_judged_the_same_every_time(times: int) -> None:
    handlers, server = Handlers(Chat), Handlers(Server)
    for _ in range(times):
        assert handlers.layer_problem({"type": "chat.message"}) is None
        refused = server.layer_problem({"type": "websocket.receive"})
        assert "server's messages" in str(refused)
        missing = handlers.layer_problem({"type": "chat.missing"})
        assert "No handler" in str(missing)
        unhashable = handlers.layer_problem({"type": ["chat.message"]})
        assert "non-empty string" in str(unhashable)
        assert handlers.layer_problem(["type"]) == (
            "expected a dict with a 'type' key, got ['type']."
        )
