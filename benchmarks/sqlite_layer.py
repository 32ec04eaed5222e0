"""Measure the SQLite channel layer across real processes on one file.

Two roles, each in its own process (this module runs them with
``subprocess``):

- ``receiver``: makes ``--members`` channels with ``new_channel()``, all
  in one group, prints the first channel's name, then receives on each in
  its own task (as consumers do) and records, per delivery, the time from
  the sender's clock reading to its receipt (both processes read
  ``time.time()`` on one machine). Before the sender starts it waits idle
  for ``--idle`` seconds and reports the CPU time that cost.
- ``sender``: sends ``--messages`` messages at ``--rate`` per second (0:
  back to back), to the first channel (``--mode direct``) or to the group
  (``--mode group``).

Reported: idle CPU of the receiving process (percent of one core),
deliveries per second (first send to last receipt), delivery latency
p50/p99/max, and deliveries lost.

Run: python -m benchmarks.sqlite_layer [--rate 200] [--messages 2000]
     python -m benchmarks.sqlite_layer --mode group --members 1000 \
         --messages 20 --rate 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django_realtime.layers.sqlite import SQLiteChannelLayer


async def _receiver(path: str, members: int, expected: int, idle: float) -> None:
    layer = SQLiteChannelLayer(path=path, capacity=10_000)
    channels = [await layer.new_channel() for _ in range(members)]
    for channel in channels:
        await layer.group_add("bench", channel)
    latencies: list[float] = []
    last = [0.0]
    first = [float("inf")]

    async def member(channel: str, count: int) -> None:
        for _ in range(count):
            message = await layer.receive(channel)
            last[0] = time.time()
            first[0] = min(first[0], message["sent"])
            latencies.append(last[0] - message["sent"])

    # Idle: every member waiting, nothing sent.
    tasks = [
        asyncio.create_task(member(channel, expected if n == 0 else 0))
        for n, channel in enumerate(channels)
    ]
    await asyncio.sleep(0.5)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(idle)
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    await asyncio.gather(*tasks[1:])
    print(json.dumps({"channel": channels[0], "idle_cpu": cpu}), flush=True)
    mode = sys.stdin.readline().strip()
    if mode == "group":
        tasks[1:] = [
            asyncio.create_task(member(channel, expected)) for channel in channels[1:]
        ]
    try:
        async with asyncio.timeout(expected / 50 + 60):
            await asyncio.gather(*tasks)
    except TimeoutError:
        pass
    span = last[0] - first[0] if latencies else 0.0
    print(json.dumps({"latencies": latencies, "span": span}), flush=True)
    await layer.close()


async def _sender(path: str, channel: str, mode: str, count: int, rate: float) -> None:
    layer = SQLiteChannelLayer(path=path, capacity=10_000)
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic() if rate else 0
        if delay > 0:
            await asyncio.sleep(delay)
        message = {"type": "bench.message", "n": n, "sent": time.time()}
        if mode == "group":
            await layer.group_send("bench", message)
        else:
            await layer.send(channel, message)
    await layer.close()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--mode", choices=["direct", "group"], default="direct")
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument(
        "--role", choices=["receiver", "sender"], help=argparse.SUPPRESS
    )
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--channel", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "receiver":
        asyncio.run(_receiver(args.path, args.members, args.messages, args.idle))
        return 0
    if args.role == "sender":
        asyncio.run(
            _sender(args.path, args.channel, args.mode, args.messages, args.rate)
        )
        return 0
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "bench.sqlite3")
        command = [sys.executable, "-m", "benchmarks.sqlite_layer", "--path", path]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        receiver = subprocess.Popen(
            [
                *command,
                "--role",
                "receiver",
                "--messages",
                str(args.messages),
                "--members",
                str(args.members),
                "--idle",
                str(args.idle),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert receiver.stdout is not None
        assert receiver.stdin is not None
        ready = json.loads(receiver.stdout.readline())
        channel, idle_cpu = ready["channel"], ready["idle_cpu"]
        receiver.stdin.write(f"{args.mode}\n")
        receiver.stdin.flush()
        subprocess.run(
            [
                *command,
                "--role",
                "sender",
                "--channel",
                channel,
                "--mode",
                args.mode,
                "--messages",
                str(args.messages),
                "--rate",
                str(args.rate),
            ],
            check=True,
            env=env,
        )
        result = json.loads(receiver.stdout.readline())
        latencies, span = result["latencies"], result["span"]
        receiver.wait(timeout=30)
    expected = args.messages * (args.members if args.mode == "group" else 1)
    print(
        f"idle receiving process ({args.members} waiting receivers): "
        f"{idle_cpu * 100:.3f}% of one core over {args.idle}s"
    )
    rate = f"{args.rate:g}/s" if args.rate else "back to back"
    print(
        f"{args.messages} {args.mode} sends, {rate}: {len(latencies)}/{expected} "
        f"deliveries, {len(latencies) / max(span, 1e-9):.0f} deliveries/s "
        "(first send to last receipt)"
    )
    if latencies:
        ms = [value * 1000 for value in latencies]
        print(
            f"latency ms: p50 {statistics.median(ms):.2f}  "
            f"p99 {_percentile(ms, 0.99):.2f}  max {max(ms):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
