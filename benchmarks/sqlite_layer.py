"""Measure the SQLite channel layer across real processes on one file.

Two roles, each in its own process (this module runs them with
``subprocess``):

- ``receiver``: makes a channel with ``new_channel()``, joins a group, prints
  the channel's name, then receives and records, per message, the time from
  the sender's clock reading to its receipt (both processes read
  ``time.time()`` on one machine). Before the sender starts it waits idle
  for ``--idle`` seconds and reports the CPU time that cost.
- ``sender``: sends ``--messages`` messages at ``--rate`` per second, to the
  receiver's channel (``--mode direct``) or to the group (``--mode group``).

Reported: idle CPU of a waiting receiver (percent of one core), and
delivery latency p50/p99/max at the paced rate, and messages lost.

Run: python -m benchmarks.sqlite_layer [--rate 200] [--messages 2000]
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


async def _receiver(path: str, expected: int, idle: float) -> None:
    layer = SQLiteChannelLayer(path=path)
    channel = await layer.new_channel()
    await layer.group_add("bench", channel)
    print(json.dumps({"channel": channel}), flush=True)
    # Idle: a receive waiting with nothing sent.
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        async with asyncio.timeout(idle):
            await layer.receive(channel)
    except TimeoutError:
        pass
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    print(json.dumps({"idle_cpu": cpu}), flush=True)
    latencies = []
    try:
        async with asyncio.timeout(expected / 50 + 30):
            while len(latencies) < expected:
                message = await layer.receive(channel)
                if message["type"] == "bench.done":
                    break
                latencies.append(time.time() - message["sent"])
    except TimeoutError:
        pass
    print(json.dumps({"latencies": latencies}), flush=True)
    await layer.close()


async def _sender(path: str, channel: str, mode: str, count: int, rate: float) -> None:
    layer = SQLiteChannelLayer(path=path, capacity=10_000)
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic()
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
    parser.add_argument(
        "--role", choices=["receiver", "sender"], help=argparse.SUPPRESS
    )
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--channel", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "receiver":
        asyncio.run(_receiver(args.path, args.messages, args.idle))
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
                "--idle",
                str(args.idle),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert receiver.stdout is not None
        channel = json.loads(receiver.stdout.readline())["channel"]
        idle_cpu = json.loads(receiver.stdout.readline())["idle_cpu"]
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
        latencies = json.loads(receiver.stdout.readline())["latencies"]
        receiver.wait(timeout=30)
    print(f"idle receiver CPU: {idle_cpu * 100:.3f}% of one core over {args.idle}s")
    print(
        f"{args.mode} sends at {args.rate:g}/s: {len(latencies)}/{args.messages} "
        "received"
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
