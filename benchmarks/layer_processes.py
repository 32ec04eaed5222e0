"""The layer benchmark's processes and throwaway databases (:mod:`benchmarks.layers`).

:class:`Process` drives one :mod:`benchmarks.layer_worker` by JSON lines,
every answer awaited with a bound; :func:`postgres_database` makes a
database with the app's tables for the PostgreSQL layer and drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "benchmarks.layers_settings"
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


class Skipped(Exception):
    """The layer cannot run here (no module, no server): a line, not a failure."""


def answers(host: str, port: int) -> bool:
    """Return whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


class Process:
    """One worker process, driven by JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(
        cls, entry: dict[str, Any], env: dict[str, str], log: Path
    ) -> Process:
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.layer_worker",
                cwd=ROOT,
                env={**os.environ, **env, "BENCH_LAYER": json.dumps(entry)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                limit=2**20,
            )
        worker = cls(process, log)
        hello = await worker.read(60.0)
        if "skip" in hello:
            await worker.stop()
            raise Skipped(hello["skip"])
        return worker

    async def read(self, within: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(within):
                line = await self.process.stdout.readline()
        except TimeoutError:
            raise RuntimeError(
                f"No answer within {within:g} s. {self.tail()}"
            ) from None
        if not line:
            raise RuntimeError(f"The worker ended: {self.tail()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{answer['error']} {self.tail()}".strip())
        return answer

    async def ask(
        self, answer_within: float, do: str, **arguments: Any
    ) -> dict[str, Any]:
        """Send a command; return its answer (raise on an error or a timeout)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"do": do, **arguments}).encode() + b"\n")
        await self.process.stdin.drain()
        return await self.read(answer_within)

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])

    async def stop(self, flush: bool = False) -> None:
        """Close the layer (flushing it if asked) and end the process."""
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.ask(30.0, "close", flush=flush)
        with contextlib.suppress(ProcessLookupError):
            if self.process.returncode is None:
                try:
                    await asyncio.wait_for(self.process.wait(), 10)
                except TimeoutError:
                    self.process.kill()
                    await self.process.wait()


@contextlib.contextmanager
def postgres_database(workdir: Path) -> Iterator[dict[str, str]]:
    """Make a throwaway database with the app's tables; yield its settings' env."""
    name = f"drt_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    where = ["-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER]
    made = subprocess.run(
        ["createdb", *where, name], capture_output=True, text=True, check=False
    )
    if made.returncode:
        raise Skipped(f"createdb failed: {made.stderr.strip()}")
    env = {"DJANGO_SETTINGS_MODULE": SETTINGS, "BENCH_PG_NAME": name}
    try:
        migrated = subprocess.run(
            [
                sys.executable,
                "-m",
                "django",
                "migrate",
                "--verbosity=0",
                "--skip-checks",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if migrated.returncode:
            raise RuntimeError(f"migrate failed: {migrated.stderr.strip()[-500:]}")
        yield env
    finally:
        subprocess.run(
            ["dropdb", *where, "--if-exists", "--force", name],
            capture_output=True,
            check=False,
            timeout=60,
        )
