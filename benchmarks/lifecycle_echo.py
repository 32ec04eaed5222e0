"""Measure what the database connection lifecycle costs per message.

Drives echo consumers in-process through their ASGI interface (no server,
no sockets), so the figures are the framework's own cost per message, with
REALTIME["CLOSE_OLD_CONNECTIONS"] on and off, for async and sync consumers
whose handlers do not touch the database. Each round measures both sides,
and which side goes first alternates between rounds, so that noise and
warm-up from the machine hit both alike; the best round is reported.

Run: python -m benchmarks.lifecycle_echo [--messages N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os

import django

from benchmarks._echo import echo_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from django.conf import settings

    from django_realtime.consumers import AsyncWebsocketConsumer, WebsocketConsumer

    class AsyncEcho(AsyncWebsocketConsumer):
        channel_layer_alias = None

        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=text_data)

    class SyncEcho(WebsocketConsumer):
        channel_layer_alias = None

        def receive(self, text_data=None, bytes_data=None):
            self.send(text_data=text_data)

    async def run() -> None:
        best: dict[tuple[str, bool], float] = {}
        for round_number in range(args.rounds):
            order = (True, False) if round_number % 2 == 0 else (False, True)
            for name, consumer, count in (
                ("async", AsyncEcho, args.messages),
                ("sync", SyncEcho, args.messages // 4),
            ):
                for lifecycle in order:
                    settings.REALTIME = {"CLOSE_OLD_CONNECTIONS": lifecycle}
                    rate = await echo_rate(consumer, count)
                    key = (name, lifecycle)
                    best[key] = max(best.get(key, 0.0), rate)
        header = ("consumer", "lifecycle on", "lifecycle off", "on/off")
        print(f"{header[0]:<10}{header[1]:>16}{header[2]:>16}{header[3]:>10}")
        for name in ("async", "sync"):
            on, off = best[(name, True)], best[(name, False)]
            print(f"{name:<10}{on:>12,.0f} m/s{off:>12,.0f} m/s{on / off:>10.3f}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
