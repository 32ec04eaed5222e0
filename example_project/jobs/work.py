"""The work a job does, step by step, with no database and no channel layer.

Each kind of job is an async generator that does its work in
:data:`STEPS` steps and yields a :class:`Step` after each one: how far it
has got, in percent, and the result so far. The worker saves and reports
each step; the last one is the job's result. Work that holds the CPU runs in
a thread, so the worker's event loop stays free.

Two kinds, to show the pattern; what they compute is not the point:

``primes``
    Count the prime numbers below ``number``, one slice of the range per
    step.
``wait``
    Wait ``number`` seconds, as a job calling slow services would.

``fail_halfway`` makes either kind raise :exc:`JobFailed` at 50 %, to show
what the page does with a job that fails.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KINDS",
    "LIMITS",
    "STEPS",
    "JobFailed",
    "Step",
    "count_primes",
    "count_primes_between",
    "describe",
    "run",
    "wait",
]

#: How many steps, so how many progress reports, a job makes.
STEPS = 20

#: The kinds of job, as the form offers them.
KINDS = {"primes": "Count the primes below N", "wait": "Wait N seconds"}

#: The largest ``number`` each kind accepts: a few seconds of work here.
LIMITS = {"primes": 200_000_000, "wait": 120}


class JobFailed(Exception):
    """The job cannot finish; its message is shown to the job's owner."""


@dataclass(frozen=True)
class Step:
    """How far a job has got: a percentage and the result so far."""

    percent: int
    result: dict[str, Any]


def count_primes_between(low: int, high: int) -> int:
    """Return how many primes ``p`` satisfy ``low <= p < high``.

    A segmented sieve: it marks the multiples of every prime up to
    ``sqrt(high)`` in a buffer of ``high - low`` bytes.
    """
    low = max(low, 2)
    if high <= low:
        return 0
    root = math.isqrt(high - 1)
    small = bytearray([1]) * (root + 1)
    segment = bytearray([1]) * (high - low)
    for p in range(2, root + 1):
        if not small[p]:
            continue
        small[p * p :: p] = bytes(len(range(p * p, root + 1, p)))
        first = max(p * p, (low + p - 1) // p * p)
        segment[first - low :: p] = bytes(len(range(first, high, p)))
    return segment.count(1)


async def count_primes(below: int, *, steps: int = STEPS) -> AsyncGenerator[Step, None]:
    """Count the primes below ``below``, one slice of the range per step."""
    count = 0
    for index in range(steps):
        low, high = below * index // steps, below * (index + 1) // steps
        count += await asyncio.to_thread(count_primes_between, low, high)
        yield Step((index + 1) * 100 // steps, {"below": below, "primes": count})


async def wait(seconds: float, *, steps: int = STEPS) -> AsyncGenerator[Step, None]:
    """Wait ``seconds`` in ``steps`` equal steps."""
    for index in range(steps):
        await asyncio.sleep(seconds / steps)
        yield Step((index + 1) * 100 // steps, {"waited": seconds})


async def run(
    kind: str, parameters: dict[str, Any], *, steps: int = STEPS
) -> AsyncGenerator[Step, None]:
    """Do the job ``kind`` with ``parameters``, yielding each step.

    Raises:
        JobFailed: ``kind`` is unknown, or ``parameters["fail_halfway"]`` is
            true and the job is halfway.
    """
    if kind == "primes":
        work = count_primes(parameters["number"], steps=steps)
    elif kind == "wait":
        work = wait(parameters["number"], steps=steps)
    else:
        raise JobFailed(f"Expected a kind of job among {sorted(KINDS)}, got {kind!r}.")
    async for step in work:
        if parameters.get("fail_halfway") and step.percent >= 50:
            raise JobFailed(f"Failed at {step.percent} %, as asked.")
        yield step


def describe(kind: str, parameters: dict[str, Any]) -> str:
    """Return what a job does, in words: ``Count the primes below 1,000``."""
    number = parameters.get("number", 0)
    if kind == "primes":
        text = f"Count the primes below {number:,}"
    elif kind == "wait":
        text = f"Wait {number:,} second{'s' if number != 1 else ''}"
    else:
        text = f"{kind} {number:,}"
    if parameters.get("fail_halfway"):
        text += " (and fail halfway)"
    return text
