"""Compare per-message framework cost with Channels, in-process.

Drives echo consumers of django_realtime and of Channels (installed with
channels-redis) through their ASGI interface, with no server and no sockets,
so the figures are each framework's own cost per message: dispatch, the
channel-layer wiring (in-memory layer for both) and, for sync consumers, the
thread hop. Which framework goes first alternates between rounds; the best
round is reported. The server-level suite is a separate, later benchmark.

Run: python -m benchmarks.inprocess_echo [--messages N] [--rounds R]
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from channels.generic import websocket as channels_websocket

    from django_realtime.consumers import AsyncWebsocketConsumer, WebsocketConsumer

    class OurAsync(AsyncWebsocketConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=text_data)

    class OurSync(WebsocketConsumer):
        def receive(self, text_data=None, bytes_data=None):
            self.send(text_data=text_data)

    class ChannelsAsync(channels_websocket.AsyncWebsocketConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=text_data)

    class ChannelsSync(channels_websocket.WebsocketConsumer):
        def receive(self, text_data=None, bytes_data=None):
            self.send(text_data=text_data)

    pairs = {
        "async": (OurAsync, ChannelsAsync, args.messages),
        "sync": (OurSync, ChannelsSync, args.messages // 4),
    }

    async def run() -> None:
        best: dict[tuple[str, str], float] = {}
        for round_number in range(args.rounds):
            for kind, (ours, theirs, count) in pairs.items():
                contenders = [("ours", ours), ("channels", theirs)]
                if round_number % 2:
                    contenders.reverse()
                for name, consumer in contenders:
                    rate = await echo_rate(consumer, count)
                    best[(kind, name)] = max(best.get((kind, name), 0.0), rate)
        header = ("consumer", "django_realtime", "channels", "ratio")
        print(f"{header[0]:<10}{header[1]:>18}{header[2]:>16}{header[3]:>8}")
        for kind in pairs:
            ours, theirs = best[(kind, "ours")], best[(kind, "channels")]
            ratio = ours / theirs
            print(f"{kind:<10}{ours:>14,.0f} m/s{theirs:>12,.0f} m/s{ratio:>8.1f}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
