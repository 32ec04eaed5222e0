"""Measure the SQLite channel layer across two real processes on one file.

A narrower view of :mod:`benchmarks.layers` (same worker, same figures),
with the rate and count of its own choosing: one process makes
``--members`` channels with ``new_channel()``, all in one group, each
receiving in its own task; after ``--idle`` seconds of waiting (its CPU
time then is reported), a second process sends ``--messages`` messages at
``--rate`` a second (0: back to back) to the first channel (``--mode
direct``) or to the group (``--mode group``).

Reported: idle CPU of the receiving process (percent of one core),
deliveries per second (first send to last receipt), delivery latency
p50/p99/max, and deliveries lost.

Run: python -m benchmarks.sqlite_layer [--rate 200] [--messages 2000]
     python -m benchmarks.sqlite_layer --mode group --members 1000 \\
         --messages 20 --rate 0
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

from benchmarks.layer_processes import SETTINGS, Process
from benchmarks.layers import LAYERS, Context, Sizes, publish_phase


async def measure(args: argparse.Namespace, directory: Path) -> None:
    """Run the two processes; print the figures."""
    layer = LAYERS["sqlite"]
    entry = {"BACKEND": layer.backend, "CONFIG": layer.config(Context(directory))}
    env = {"DJANGO_SETTINGS_MODULE": SETTINGS}
    log = directory / "workers.log"
    members = await Process.start(entry, env, log)
    sender = None
    try:
        sender = await Process.start(entry, env, log)
        group = f"bench-{uuid.uuid4().hex[:8]}"
        joined = await members.ask(
            60 + args.members / 10, "members", group=group, count=args.members
        )
        await asyncio.sleep(0.5)  # let every receive start waiting
        idle = await members.ask(args.idle + 30, "idle", seconds=args.idle)
        sizes = Sizes(members=args.members, drain_timeout=args.messages / 50 + 60)
        channel = joined["channel"] if args.mode == "direct" else ""
        got = await publish_phase(
            members, sender, group, "m", args.messages, args.rate, sizes, channel
        )
    finally:
        if sender is not None:
            await sender.stop()
        await members.stop()
    expected = got["count"] + got["lost"]
    print(
        f"idle receiving process ({args.members} waiting receivers): "
        f"{idle['cpu'] * 100:.3f}% of one core over {args.idle:g}s"
    )
    rate = f"{args.rate:g}/s" if args.rate else "back to back"
    print(
        f"{args.messages} {args.mode} sends, {rate}: {got['count']}/{expected} "
        f"deliveries, {got['rate'] or 0:.0f} deliveries/s "
        "(first send to last receipt)"
    )
    if got["count"]:
        print(
            f"latency ms: p50 {got['p50']:.2f}  p99 {got['p99']:.2f}  "
            f"max {got['max']:.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--mode", choices=["direct", "group"], default="direct")
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--members", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="django_realtime-sqlite-") as directory:
        asyncio.run(measure(args, Path(directory)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
