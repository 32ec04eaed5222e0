"""One process of the layer benchmark (:mod:`benchmarks.layers`).

Started with one ``CHANNEL_LAYERS`` entry (``BACKEND`` and ``CONFIG``) as
JSON in ``BENCH_LAYER``, it builds that layer through django_realtime's
layer manager, so that one code path measures every layer. Its first line
on stdout says whether it could: ``{"ready": true}``, ``{"skip": why}``
(the backend does not import) or ``{"error": why}``. Then it
answers commands, JSON lines on stdin, with one JSON line each
(``{"error": why}`` if the command raised):

- ``{"do": "members", "group": g, "count": n}``: make ``n`` channels with
  ``new_channel()``, add each to ``g`` (one after another), then receive on
  each in its own task, as consumers do. Answers the joins' seconds and
  the first channel's name.
- ``{"do": "echo_server"}``: make a channel whose messages are sent back
  to their ``reply`` channel. Answers its name.
- ``{"do": "idle", "seconds": s}``: the CPU time of this process (every
  thread) over ``s`` seconds in which nothing is sent, as a fraction of one
  core.
- ``{"do": "publish", "group": g, "phase": p, "count": n, "rate": r}``:
  ``group_send`` ``n`` messages (``send`` them to ``"channel"`` instead,
  if given), ``r`` a second (0: back to back), each
  stamped with ``time.monotonic_ns()``, which is one clock for every
  process on a Linux machine: paced, the time the send was due; back to
  back, the time it started. Answers when the first send started, and how
  many sends started over an interval late.
- ``{"do": "collect", "phase": p, "expected": n, "within": t}``: wait
  until the members have ``n`` deliveries of phase ``p``, or ``t`` seconds.
  Answers the count, latency p50/p99/max (send to receipt, ms), the last
  receipt's time, and receive errors.
- ``{"do": "echo", "channel": c, "count": n, "within": t}``: ``n`` round
  trips to an echo channel, one after another (a few more first, not
  counted). Answers round trip p50/p99/max (ms) and how many were lost.
- ``{"do": "close", "flush": bool}``: flush the layer if asked (deletes the
  run's keys, queues or rows), close it, exit.

A process may take both roles (members and sender): the in-memory layer
does not cross processes, so it is measured in one.

Run by :mod:`benchmarks.layers`; not meant to be started by hand.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import time
from typing import Any

WARM_ROUND_TRIPS = 10


def percentiles_ms(values_ns: list[int]) -> dict[str, float | None]:
    """Return p50, p99 and max of ``values_ns`` in milliseconds (None if empty)."""
    if not values_ns:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values_ns)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6

    return {"p50": at(0.5), "p99": at(0.99), "max": ordered[-1] / 1e6}


class Worker:
    """The layer and what its members received, per phase."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.tasks: list[asyncio.Task[None]] = []
        self.latencies: dict[str, list[int]] = collections.defaultdict(list)
        self.last_ns: dict[str, int] = {}
        self.expected: dict[str, int] = {}
        self.reached: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
        self.errors: collections.Counter[str] = collections.Counter()
        self.reply_channel: str | None = None

    # -- members --------------------------------------------------------------

    async def members(self, group: str, count: int) -> dict[str, Any]:
        channels = [await self.layer.new_channel() for _ in range(count)]
        started = time.monotonic()
        for channel in channels:
            await self.layer.group_add(group, channel)
        seconds = time.monotonic() - started
        self.tasks += [asyncio.create_task(self._member(c)) for c in channels]
        return {"join_seconds": seconds, "channel": channels[0] if channels else None}

    async def _member(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except Exception as error:  # counted, and receiving goes on
                self.errors[type(error).__name__] += 1
                await asyncio.sleep(0.1)
                continue
            now = time.monotonic_ns()
            phase = message["phase"]
            received = self.latencies[phase]
            received.append(now - message["t"])
            self.last_ns[phase] = now
            if len(received) >= self.expected.get(phase, sys.maxsize):
                self.reached[phase].set()

    async def collect(self, phase: str, expected: int, within: float) -> dict[str, Any]:
        self.expected[phase] = expected
        if len(self.latencies[phase]) >= expected:
            self.reached[phase].set()
        try:
            async with asyncio.timeout(within):
                await self.reached[phase].wait()
        except TimeoutError:
            pass
        received = self.latencies.pop(phase, [])
        return {
            "count": len(received),
            "last_ns": self.last_ns.get(phase),
            "errors": dict(self.errors),
            **percentiles_ms(received),
        }

    async def echo_server(self) -> dict[str, Any]:
        channel = await self.layer.new_channel()

        async def serve() -> None:
            while True:
                try:
                    message = await self.layer.receive(channel)
                    await self.layer.send(
                        message["reply"], {"type": "bench.echo", "n": message["n"]}
                    )
                except Exception as error:
                    self.errors[f"echo {type(error).__name__}"] += 1
                    await asyncio.sleep(0.1)

        self.tasks.append(asyncio.create_task(serve()))
        return {"channel": channel}

    async def idle(self, seconds: float) -> dict[str, Any]:
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        return {"cpu": (time.process_time() - cpu) / (time.monotonic() - wall)}

    # -- sender ---------------------------------------------------------------

    async def publish(
        self, group: str, phase: str, count: int, rate: float, channel: str = ""
    ) -> dict[str, Any]:
        first_ns = time.monotonic_ns()
        behind = 0
        for n in range(count):
            # Paced: stamped with when the message was due, so that a sender
            # that cannot keep the pace (its sends take longer than the
            # interval) shows in the latency instead of slowing the pace.
            due = first_ns + int(n / rate * 1e9) if rate else 0
            now = time.monotonic_ns()
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
            elif rate and now - due > 1e9 / rate:
                behind += 1
            message = {
                "type": "bench.message",
                "phase": phase,
                "n": n,
                "t": due or time.monotonic_ns(),
            }
            if channel:
                await self.layer.send(channel, message)
            else:
                await self.layer.group_send(group, message)
        seconds = (time.monotonic_ns() - first_ns) / 1e9
        return {"first_ns": first_ns, "seconds": seconds, "behind": behind}

    async def echo(self, channel: str, count: int, within: float) -> dict[str, Any]:
        if self.reply_channel is None:
            self.reply_channel = await self.layer.new_channel()
        mine = self.reply_channel
        round_trips: list[int] = []
        lost = 0
        for n in range(-WARM_ROUND_TRIPS, count):
            started = time.monotonic_ns()
            await self.layer.send(
                channel, {"type": "bench.echo", "reply": mine, "n": n}
            )
            try:
                async with asyncio.timeout(within):
                    while (await self.layer.receive(mine))["n"] != n:
                        pass  # the late answer to a round trip counted lost
            except TimeoutError:
                lost += n >= 0
                continue
            if n >= 0:
                round_trips.append(time.monotonic_ns() - started)
        return {"count": len(round_trips), "lost": lost, **percentiles_ms(round_trips)}

    # -- both -----------------------------------------------------------------

    async def close(self, flush: bool) -> dict[str, Any]:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if flush:
            await self.layer.flush()
        for name in ("close", "close_pools"):
            close = getattr(self.layer, name, None)
            if close is not None:
                await close()
                break
        return {"closed": True}


def _say(answer: dict[str, Any]) -> None:
    print(json.dumps(answer), flush=True)


def _build(config: dict[str, Any]) -> Any:
    """Return the layer for ``config``, as ``CHANNEL_LAYERS["default"]`` would."""
    from django_realtime.layers.registry import ChannelLayerManager

    return ChannelLayerManager({"default": config}).make_backend("default")


async def _serve(worker: Worker) -> None:
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            await worker.close(flush=False)
            return
        command = json.loads(line)
        action = command.pop("do")
        try:
            answer = await getattr(worker, action)(**command)
        except Exception as error:
            answer = {"error": f"{action}: {type(error).__name__}: {error}"}
        _say(answer)
        if action == "close":
            return


def main() -> int:
    config = json.loads(os.environ["BENCH_LAYER"])
    import django
    from django.utils.module_loading import import_string

    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        django.setup()
    try:
        import_string(config["BACKEND"])
    except ImportError as error:
        _say({"skip": f"{config['BACKEND']} does not import: {error}"})
        return 0
    try:
        layer = _build(config)
    except Exception as error:
        _say({"error": f"building the layer: {type(error).__name__}: {error}"})
        return 1
    _say({"ready": True, "pid": os.getpid()})
    asyncio.run(_serve(Worker(layer)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
