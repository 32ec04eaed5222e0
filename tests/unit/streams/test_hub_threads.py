"""StreamHub announces safely while other threads add and remove listeners."""

from __future__ import annotations

import asyncio
import threading

from django_realtime.streams.positions import Publication
from django_realtime.streams.stores.base import StreamHub


class Listener:
    def __init__(self) -> None:
        self.got: list[Publication] = []

    def publication(self, publication: Publication) -> None:
        self.got.append(publication)

    def resync(self, stream: str) -> None:
        pass


class Subscribing(Listener):
    """While it is called, another thread's loop subscribes a newcomer."""

    def __init__(self, hub: StreamHub, newcomer: Listener) -> None:
        super().__init__()
        self.hub = hub
        self.newcomer = newcomer

    def publication(self, publication: Publication) -> None:
        super().publication(publication)

        async def subscribe() -> None:
            self.hub.add(publication.stream, self.newcomer)

        thread = threading.Thread(target=asyncio.run, args=(subscribe(),))
        thread.start()
        thread.join(5)


def test_a_listener_subscribed_from_another_thread_mid_announcement() -> None:
    hub = StreamHub()
    newcomer = Listener()
    first, last = Subscribing(hub, newcomer), Listener()
    publication = Publication("s", "e", 1, '"x"')

    async def announce() -> int:
        hub.add("s", first)
        hub.add("s", last)
        return hub.announce(publication)

    assert asyncio.run(announce()) == 3
    # Everyone subscribed before the announcement got it; the newcomer came
    # after it began, and gets the next one.
    assert (first.got, last.got, newcomer.got) == ([publication], [publication], [])
