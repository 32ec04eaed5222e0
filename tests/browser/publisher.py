"""Publish ticks to a stream at a steady rate, as another process of a site.

``python -m tests.browser.publisher PREFIX STREAM COUNT RATE`` publishes
``{"type": "tick", "n": 0..COUNT-1}`` to ``STREAM`` of the Redis history
store under ``PREFIX`` (the server's, see :mod:`tests.browser.stores`),
``RATE`` per second, then prints ``done``. With ``--held``, it publishes
only up to a limit that the test raises by writing numbers, one per line,
to its stdin (``COUNT`` once stdin closes), so a slow machine cannot let it
finish before the test is done with it.
Each publish is awaited: a failure ends the process with a traceback rather
than being retried, which could publish a message twice.
"""

from __future__ import annotations

import asyncio
import sys
import threading

import django


class Limit:
    """How many ticks the test allows so far, raised from stdin."""

    def __init__(self, value: int, count: int) -> None:
        self.value = value
        self.count = count

    def follow_stdin(self) -> None:
        for line in sys.stdin:
            self.value = max(self.value, int(line))
        self.value = self.count


async def main(prefix: str, stream: str, count: int, rate: float, limit: Limit) -> None:
    """Publish ``count`` ticks at ``rate`` per second, up to ``limit``."""
    from django_realtime.streams import apublish, set_stream_store
    from django_realtime.streams.stores import PolicyTable
    from django_realtime.streams.stores.redis import RedisHistoryStore
    from tests.browser.stores import POLICIES, REDIS_URL

    store = RedisHistoryStore(REDIS_URL, prefix=prefix, policies=PolicyTable(POLICIES))
    set_stream_store(store)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        for n in range(count):
            while n >= limit.value:
                await asyncio.sleep(0.01)
                start = loop.time() - n / rate
            # On a fixed schedule, so a slow publish does not slow the rate.
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            await apublish(stream, {"type": "tick", "n": n}, immediately=True)
    finally:
        await store.close()
    print("done", flush=True)


if __name__ == "__main__":
    django.setup()
    held = "--held" in sys.argv
    prefix, stream, count, rate = (a for a in sys.argv[1:] if a != "--held")
    limit = Limit(0 if held else int(count), int(count))
    if held:
        threading.Thread(target=limit.follow_stdin, daemon=True).start()
    asyncio.run(main(prefix, stream, int(count), float(rate), limit))
