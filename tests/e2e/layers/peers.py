"""A peer process of the two-process layer tests, read line by line as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


class PeerProcess:
    """Run ``python -m module *args``; read its output lines as JSON, with a timeout."""

    def __init__(self, module: str, *args: str, timeout: float) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(self.timeout):
            text = await asyncio.to_thread(self.process.stdout.readline)
        if not text:
            raise AssertionError(f"The peer ended (exit {self.process.wait()}).")
        result: dict[str, Any] = json.loads(text)
        return result

    async def wait(self) -> int:
        async with asyncio.timeout(self.timeout):
            return await asyncio.to_thread(self.process.wait)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
