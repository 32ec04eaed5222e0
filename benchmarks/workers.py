"""Start load workers (:mod:`benchmarks.worker`) and talk to them.

The suite spreads a measurement's connections over ``processes`` workers,
each a child process pinned to the client's cores, and exchanges JSON lines
with them. Every wait is bounded; :func:`running` kills the workers when
its block ends, whatever happens in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import Any

from benchmarks.servers import ROOT


class WorkerError(RuntimeError):
    """A worker died before it answered."""


class Worker:
    """One worker process; made by :func:`running`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        #: The connections it opened.
        self.opened = 0

    async def send(self, command: dict[str, Any]) -> None:
        """Write one command line."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def answer(self, within: float) -> dict[str, Any]:
        """Return the next answer line, waiting at most ``within`` seconds.

        Raises:
            TimeoutError: No answer within ``within`` seconds.
            WorkerError: The worker exited.
        """
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(within):
                line = await self.process.stdout.readline()
        except TimeoutError:
            raise TimeoutError(
                f"No answer from worker {self.process.pid} within {within:g} s."
            ) from None
        if not line:
            raise WorkerError(
                f"Expected an answer from worker {self.process.pid}, got its exit "
                f"with {await self.process.wait()}."
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


def split(count: int, parts: int) -> list[int]:
    """Return ``count`` spread over ``parts`` as evenly as possible (no zeros)."""
    parts = max(1, min(parts, count))
    return [count // parts + (index < count % parts) for index in range(parts)]


@contextlib.asynccontextmanager
async def running(
    mode: str,
    url: str,
    count: int,
    *,
    size: int,
    processes: int,
    cpus: Iterable[int] | None,
    ready_timeout: float = 120.0,
    module: str = "benchmarks.worker",
    last_argument: str | None = None,
) -> AsyncIterator[tuple[list[Worker], Counter[str]]]:
    """Start workers holding ``count`` connections to ``url`` between them.

    Yields the workers once each has opened its connections, and the
    handshakes that failed. The workers are killed when the block ends.
    ``module`` is the worker's; its arguments are the mode, the URL, the
    count, then ``last_argument`` (by default the size).
    """
    pinned = set(cpus) if cpus is not None else None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers: list[Worker] = []
    try:
        for share in split(count, processes):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                mode,
                url,
                str(share),
                str(size) if last_argument is None else last_argument,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # An answer carries every latency of a phase: megabytes.
                limit=1 << 28,
                preexec_fn=(lambda: os.sched_setaffinity(0, pinned))
                if pinned
                else None,
            )
            workers.append(Worker(process))
        failures: Counter[str] = Counter()
        for worker in workers:
            ready = await worker.answer(ready_timeout)
            failures.update(ready["failures"])
            worker.opened = int(ready["ready"])
        yield workers, failures
    finally:
        for worker in workers:
            with contextlib.suppress(Exception):
                await worker.send({"quit": True})
            worker.kill()
        for worker in workers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.process.wait(), 10)
