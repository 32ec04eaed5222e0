"""The in-memory store tells a publisher that nobody in its process listens."""

from __future__ import annotations

import logging

import pytest

from django_realtime.streams.positions import Publication
from django_realtime.streams.stores import MemoryHistoryStore

LOGGER = "django_realtime.streams.stores.memory"


class Listener:
    def __init__(self) -> None:
        self.got: list[Publication] = []

    def publication(self, publication: Publication) -> None:
        self.got.append(publication)

    def resync(self, stream: str) -> None:
        pass


async def test_publishing_where_nobody_ever_listened_warns_once_with_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As from manage.py shell on the defaults: no page will ever see it.
    store = MemoryHistoryStore()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await store.publish("room.lobby", '"one"')
        await store.publish("room.lobby", '"two"')

    # Only this logger's: a garbage-collected task of an earlier test may log.
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert "'room.lobby'" in record.getMessage()
    assert "never had a subscriber" in record.getMessage()
    assert "SQLite store" in record.getMessage()


async def test_a_process_with_subscribers_publishes_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryHistoryStore()
    listener = Listener()
    await store.listen("room.lobby", listener)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await store.publish("room.other", '"nobody here yet"')
        await store.publish("room.lobby", '"hello"')

    assert [r for r in caplog.records if r.name == LOGGER] == []
    assert [p.data for p in listener.got] == ['"hello"']
