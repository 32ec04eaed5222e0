"""Echo through a multiplexed topic against the same consumer on its own socket.

One uvicorn process (pinned to one core) serves ``benchmarks.multiplex_app``;
this process is the client, on the other cores. Rounds alternate between
the two paths: each round opens ``--connections`` sockets, each sending a
message and awaiting its echo in a loop for ``--duration`` seconds (on the
multiplexed path, every socket has one topic open and each message goes
in its topic's data frame). For each path the best round is reported twice:
the most echoes a second, and the least server CPU time per echo (the
round least disturbed by other load on the machine); then their ratios.

Then memory: one multiplexed socket opens ``--topics`` more topics (each an
echo consumer with its own channel), and the server's resident memory
grows by the figure printed per topic; the same for as many sockets of
their own, for comparison.

Run: python -m benchmarks.multiplex [--quick | --smoke] [--server uvicorn]
(also the ``multiplex`` step of ``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from benchmarks import servers

APP = "benchmarks.multiplex_app:application"
MESSAGE = "x" * 64
ENVELOPE = "echo\n" + MESSAGE
OPEN = '{"topic":"echo","kind":"open"}'


async def _open(url: str, mux: bool) -> ClientConnection:
    socket = await connect(url, max_queue=None, compression=None)
    if mux:
        await socket.send(OPEN)
        await socket.recv()
    return socket


async def echo_round(url: str, mux: bool, connections: int, duration: float) -> int:
    """Return how many echoes ``connections`` sockets got in ``duration`` s."""
    sockets = [await _open(url, mux) for _ in range(connections)]
    frame = ENVELOPE if mux else MESSAGE
    stop = time.monotonic() + duration
    counts = [0] * connections

    async def loop(index: int, socket: ClientConnection) -> None:
        while time.monotonic() < stop:
            await socket.send(frame)
            await socket.recv()
            counts[index] += 1

    await asyncio.gather(*(loop(n, s) for n, s in enumerate(sockets)))
    for socket in sockets:
        await socket.close()
    return sum(counts)


async def echo(server: servers.Server, args: argparse.Namespace) -> None:
    rates: dict[bool, float] = {False: 0.0, True: 0.0}
    cpus: dict[bool, float] = {False: float("inf"), True: float("inf")}
    for round_number in range(args.rounds * 2):
        mux = bool(round_number % 2)
        url = server.url("/ws/mux/" if mux else "/ws/echo/")
        cpu_before = server.cpu_seconds()
        count = await echo_round(url, mux, args.connections, args.duration)
        cpu = server.cpu_seconds() - cpu_before
        rates[mux] = max(rates[mux], count / args.duration)
        if count:
            cpus[mux] = min(cpus[mux], cpu / count * 1e6)
    own_rate, own_cpu, mux_rate, mux_cpu = (
        rates[False],
        cpus[False],
        rates[True],
        cpus[True],
    )
    print(f"{'path':<22}{'echoes/s':>12}{'server CPU/echo':>18}")
    print(f"{'own socket':<22}{own_rate:>12,.0f}{own_cpu:>15.1f} us")
    print(f"{'multiplexed topic':<22}{mux_rate:>12,.0f}{mux_cpu:>15.1f} us")
    print(
        f"ratio (multiplexed / own socket): {mux_rate / own_rate:.2f}x echoes/s, "
        f"{own_cpu / mux_cpu:.2f}x echoes per server CPU second"
    )


async def memory(server: servers.Server, args: argparse.Namespace) -> None:
    count = args.topics
    socket = await connect(server.url("/ws/mux/"), max_queue=None)
    await asyncio.sleep(0.5)
    before = server.rss_kib()
    for n in range(count):
        await socket.send(f'{{"topic":"echo/{n}","kind":"open"}}')
    for _ in range(count):
        await socket.recv()
    await asyncio.sleep(0.5)
    per_topic = (server.rss_kib() - before) / count
    await socket.close()

    await asyncio.sleep(0.5)
    before = server.rss_kib()
    sockets = [
        await connect(server.url("/ws/echo/"), max_queue=None) for _ in range(count)
    ]
    await asyncio.sleep(0.5)
    per_socket = (server.rss_kib() - before) / count
    for own in sockets:
        await own.close()
    print(
        f"memory per extra topic on a socket: {per_topic:.1f} KiB "
        f"({count} topics); per extra socket of its own: {per_socket:.1f} KiB"
    )


def main(argv: list[str] | None = None) -> int:
    """Run both measures against one server; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="uvicorn", choices=("uvicorn", "daphne"))
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="1 s rounds, 2 each")
    parser.add_argument("--smoke", action="store_true", help="a few echoes only")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.topics = 1.0, 2, 500
    if args.smoke:
        args.duration, args.rounds, args.topics, args.connections = 0.3, 1, 50, 4
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[0] if len(cpus) > 1 else None
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.realtime_settings"}
    try:
        if server_cpu is not None:
            os.sched_setaffinity(0, set(cpus[1:]))
        with tempfile.TemporaryDirectory() as workdir:
            log = Path(workdir) / "server.log"
            with servers.serving(args.server, APP, env, server_cpu, log) as server:
                print(
                    f"Multiplexing: {args.server}, {args.connections} connections, "
                    f"{len(MESSAGE)}-character echoes, {args.duration} s rounds"
                )
                asyncio.run(echo(server, args))
                asyncio.run(memory(server, args))
    finally:
        os.sched_setaffinity(0, set(cpus))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
