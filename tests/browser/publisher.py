"""Publish ticks to a stream at a steady rate, as another process of a site.

``python -m tests.browser.publisher PREFIX STREAM COUNT RATE`` publishes
``{"type": "tick", "n": 0..COUNT-1}`` to ``STREAM`` of the Redis history
store under ``PREFIX`` (the server's, see :mod:`tests.browser.stores`),
``RATE`` per second, then prints ``done``.
Each publish is awaited: a failure ends the process with a traceback rather
than being retried, which could publish a message twice.
"""

from __future__ import annotations

import asyncio
import sys

import django


async def main(prefix: str, stream: str, count: int, rate: float) -> None:
    """Publish ``count`` ticks at ``rate`` per second."""
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
            # On a fixed schedule, so a slow publish does not slow the rate.
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            await apublish(stream, {"type": "tick", "n": n}, immediately=True)
    finally:
        await store.close()
    print("done", flush=True)


if __name__ == "__main__":
    django.setup()
    prefix, stream, count, rate = sys.argv[1:]
    asyncio.run(main(prefix, stream, int(count), float(rate)))
