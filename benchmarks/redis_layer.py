"""Compare group fan-out on Redis: our RedisChannelLayer against channels-redis' layers.

Two layer instances sharing the Redis server on 127.0.0.1:6379 stand for two
server processes (they share this process's event loop and CPU, so the
figures are a lower bound for real processes). Members are split between
them; all join one group at once, then one instance sends:

- burst: ``--messages`` group sends back to back;
- paced: ``--paced`` group sends, one every ``--interval`` seconds.

Each member receives in its own task, as a consumer does. Reported per layer:
join time and failures (failed joins are then retried one at a time, so that
fan-out is always measured on every member), deliveries per second (first
send to last receipt), publish-to-receipt latency p50/p99, and deliveries
lost (not received within ``--timeout`` seconds). Keys use a fresh prefix,
deleted at the end.

Run: python -m benchmarks.redis_layer [--members N] [--messages M] [--layers ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

REDIS_URL = "redis://127.0.0.1:6379"
LAYERS = {
    "django_realtime": "django_realtime.layers.redis.RedisChannelLayer",
    "channels_redis": "channels_redis.core.RedisChannelLayer",
    "channels_redis_pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


@dataclass
class Run:
    """What one layer did in one pattern."""

    expected: int
    latencies: list[float] = field(default_factory=list)
    first_send: float = 0.0
    last_receipt: float = 0.0

    def row(self) -> str:
        received = len(self.latencies)
        elapsed = max(self.last_receipt - self.first_send, 1e-9)
        if not received:
            return f"{0:>12,.0f}{'-':>10}{'-':>10}{self.expected:>8}"
        cuts = statistics.quantiles(self.latencies, n=100) if received > 1 else []
        p50 = statistics.median(self.latencies) * 1000
        p99 = (cuts[98] if cuts else self.latencies[0]) * 1000
        lost = self.expected - received
        return f"{received / elapsed:>12,.0f}{p50:>10.1f}{p99:>10.1f}{lost:>8}"


def build(path: str, prefix: str) -> Any:
    module, _, name = path.rpartition(".")
    layer_class = getattr(__import__(module, fromlist=[name]), name)
    return layer_class(hosts=[REDIS_URL], prefix=prefix)


async def consume(
    layer: Any, channel: str, count: int, run: Run, done: asyncio.Event
) -> None:
    """Receive ``count`` messages on ``channel``, as a consumer would."""
    for _ in range(count):
        message = await layer.receive(channel)
        now = time.perf_counter()
        run.latencies.append(now - message["t"])
        run.last_receipt = now
    if len(run.latencies) == run.expected:
        done.set()


async def measure(path: str, args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    layers = [build(path, prefix), build(path, prefix)]
    members = [
        (layers[n % 2], await layers[n % 2].new_channel()) for n in range(args.members)
    ]
    started = time.perf_counter()
    joins = await asyncio.gather(
        *(layer.group_add("crowd", channel) for layer, channel in members),
        return_exceptions=True,
    )
    join_seconds = time.perf_counter() - started
    failed = [
        member
        for member, result in zip(members, joins, strict=True)
        if isinstance(result, BaseException)
    ]
    join_failures = len(failed)
    # Fan-out is measured on every member: join the failed ones one by one.
    for layer, channel in failed:
        await layer.group_add("crowd", channel)

    results: dict[str, Any] = {"joins": (join_seconds, join_failures)}
    for pattern, count in (("burst", args.messages), ("paced", args.paced)):
        run = Run(expected=count * len(members))
        done = asyncio.Event()
        consumers = [
            asyncio.create_task(consume(layer, channel, count, run, done))
            for layer, channel in members
        ]
        await asyncio.sleep(0.1)  # let every receive start waiting
        run.first_send = time.perf_counter()
        for n in range(count):
            message = {"type": "bench", "n": n, "t": time.perf_counter()}
            await layers[0].group_send("crowd", message)
            if pattern == "paced":
                await asyncio.sleep(args.interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), args.timeout)
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        results[pattern] = run

    for layer in layers:
        await layer.flush()  # the pub/sub layer closes its connections here
        close = getattr(layer, "close_pools", None) or getattr(layer, "close", None)
        if close is not None:
            await close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--paced", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument(
        "--layers",
        default=",".join(LAYERS),
        help="comma-separated: " + ", ".join(LAYERS),
    )
    args = parser.parse_args()

    results = {}
    for name in args.layers.split(","):
        results[name] = asyncio.run(measure(LAYERS[name], args))

    print(
        f"{args.members} members over 2 instances; burst of {args.messages}, "
        f"{args.paced} paced every {args.interval * 1000:.0f} ms"
    )
    print(
        f"{'layer':<23}{'pattern':<8}{'deliveries/s':>12}{'p50 ms':>10}"
        f"{'p99 ms':>10}{'lost':>8}"
    )
    for name, result in results.items():
        for pattern in ("burst", "paced"):
            print(f"{name:<23}{pattern:<8}{result[pattern].row()}")
    for name, result in results.items():
        seconds, failures = result["joins"]
        print(
            f"{name}: {args.members} concurrent joins in {seconds * 1000:.0f} ms, "
            f"{failures} failed"
        )


if __name__ == "__main__":
    main()
