"""Presence measured: convergence of a burst, snapshots, memory per member.

1. Convergence: two daphne processes on the Redis store; ``--members``
   WebSocket clients (1,000) join one stream within one second, half on
   each process. Each client is a member and keeps the members as
   realtime.js does (snapshot, then versioned diffs), on a raw socket of
   :mod:`benchmarks.presence_client`, so the client costs far less than
   the servers it measures. Reported: the time
   from the first join until every client's view holds exactly every
   member (and the median client's), and the diff frames each got; the
   same time counted from the last join.
2. Snapshot: ``--big`` members (10,000) of one stream, tracked in Redis;
   the ``presence.members`` reply's size, and the time from the request to
   the reply at a client of a server process; the in-process backend's
   snapshot time too.
3. Memory per member: Redis's ``MEMORY USAGE`` of the stream's keys, and
   the in-process backend's allocations (tracemalloc), each divided by the
   members.

Bounded: every wait has a timeout; servers are killed at the end.
Run: python -m benchmarks.presence [--smoke] [--members N] [--big N]
[--server daphne|uvicorn]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.presence_client import Member, View

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
APP = "benchmarks.presence_app:application"


async def convergence(urls: list[str], members: int) -> dict[str, Any]:
    stream = f"room.burst-{uuid.uuid4().hex[:6]}"
    loop = asyncio.get_running_loop()
    views = [View(stream, members) for _ in range(members)]
    clients: list[Member] = []
    start = time.monotonic() + 0.5

    async def join(n: int) -> None:
        await asyncio.sleep(max(0.0, start + n / members - time.monotonic()))
        url = urlsplit(urls[n % 2])
        host, port = url.hostname or "127.0.0.1", url.port or 80
        path = f"/ws/?user=u{n}"
        _, client = await loop.create_connection(
            lambda: Member(path, url.netloc, views[n]), host, port
        )
        clients.append(client)
        await asyncio.wait_for(client.opened, 30)

    joins = asyncio.gather(*(join(n) for n in range(members)))
    deadline = start + 60
    try:
        while time.monotonic() < deadline:
            if all(v.converged is not None for v in views):
                break
            if joins.done() and joins.exception() is not None:
                raise RuntimeError(f"A client failed: {joins.exception()!r}")
            problems = [c.problem for c in clients if c.problem]
            if problems:
                raise RuntimeError(f"A client failed: {problems[0]}")
            await asyncio.sleep(0.05)
    finally:
        joins.cancel()
        await asyncio.gather(joins, return_exceptions=True)
        for client in clients:
            client.close()
    converged = [v.converged - start for v in views if v.converged is not None]
    return {
        "members": members,
        "converged": len(converged),
        "all_converged_s": max(converged) if len(converged) == members else None,
        "all_converged_after_last_join_s": (
            max(converged) - (members - 1) / members
            if len(converged) == members
            else None
        ),
        "median_converged_s": statistics.median(converged) if converged else None,
        "last_join_s": (members - 1) / members,
        "diff_frames_per_client_median": statistics.median(v.diffs for v in views),
        "unconverged_sizes": sorted(
            len(v.members) for v in views if v.converged is None
        )[:10],
    }


async def snapshot(url: str, prefix: str, big: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    from django_realtime.presence.redis import RedisPresence

    stream = f"room.big-{uuid.uuid4().hex[:6]}"
    backend = RedisPresence(REDIS_URL, prefix)
    client = await backend._client()
    keys = backend._keys(stream)
    started = time.monotonic()
    from django_realtime.presence._redis_scripts import TRACK

    for first in range(0, big, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for n in range(first, min(first + 1000, big)):
                pipe.eval(
                    TRACK,
                    4,
                    *keys,
                    f"bench/{n}",
                    f"m{n}",
                    f'{{"username":"m{n}"}}',
                    "bench",
                )
            await pipe.execute()
    tracked = time.monotonic() - started
    # The members as they stay: :unpublished empties as diffs go out.
    usage = sum([int(await client.memory_usage(k) or 0) for k in keys[:3]])
    async with connect(f"{url}/ws/?user=reader", max_size=None) as ws:
        await ws.send(
            json.dumps({"kind": "subscribe", "id": 1, "stream": f"presence:{stream}"})
        )
        while json.loads(await ws.recv()).get("id") != 1:
            pass
        times, sizes = [], []
        for attempt in range(3):
            sent = time.monotonic()
            await ws.send(
                json.dumps(
                    {
                        "kind": "request",
                        "id": 10 + attempt,
                        "type": "presence.members",
                        "data": {"stream": stream},
                    }
                )
            )
            while True:
                text = await ws.recv()
                if json.loads(text).get("id") == 10 + attempt:
                    break
            times.append(time.monotonic() - sent)
            sizes.append(len(text))
    await client.delete(*keys)
    await backend.close()
    return {
        "members": big,
        "track_all_s": tracked,
        "snapshot_bytes": sizes[-1],
        "snapshot_bytes_per_member": sizes[-1] / big,
        "snapshot_reply_s_median": statistics.median(times),
        "redis_bytes_per_member": usage / big,
    }


async def in_process(big: int) -> dict[str, Any]:
    from django_realtime.presence.backends import MemoryPresence

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    backend = MemoryPresence()
    for n in range(big):
        await backend.track(
            "room.mem", f"p/{n}", f"m{n}", f'{{"username":"m{n}"}}', "p"
        )
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    started = time.monotonic()
    _, members = await backend.snapshot("room.mem")
    taken = time.monotonic() - started
    return {
        "members": len(members),
        "bytes_per_member": grown / big,
        "snapshot_s": taken,
    }


async def run(args: argparse.Namespace) -> None:
    from benchmarks.servers import serving

    prefix = f"bench-presence-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.realtime_settings",
        "BENCH_PRESENCE_PREFIX": prefix,
        "REDIS_URL": REDIS_URL,
    }
    logs = Path(tempfile.mkdtemp(prefix="bench-presence-"))
    with (
        serving(args.server, APP, env, 0, logs / "one.log") as one,
        serving(args.server, APP, env, 1, logs / "two.log") as two,
    ):
        urls = [f"ws://127.0.0.1:{s.port}" for s in (one, two)]
        servers = (one, two)
        before = [s.cpu_seconds() for s in servers], time.process_time()
        result = await convergence(urls, args.members)
        used = [s.cpu_seconds() - b for s, b in zip(servers, before[0], strict=True)]
        result["server_cpu_s"] = [round(u, 2) for u in used]
        result["client_cpu_s"] = round(time.process_time() - before[1], 2)
        result["load_average"] = os.getloadavg()[0]
        print(f"convergence, two {args.server} processes:", json.dumps(result))
        result = await snapshot(urls[0], prefix, args.big)
        print("snapshot, Redis:", json.dumps(result))
    print("in-process backend:", json.dumps(await in_process(args.big)))
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small, quick run")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--server", choices=("daphne", "uvicorn"), default="daphne")
    args = parser.parse_args()
    if args.smoke:
        args.members, args.big = 50, 500
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.realtime_settings")
    import django

    django.setup()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
