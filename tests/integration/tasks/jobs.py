"""Tasks the tests in this folder enqueue (tasks must live at module level).

Decorated under whatever ``TASKS`` the test settings have (Django's
immediate backend); the tests switch ``TASKS`` to the channel layer backend
before enqueueing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import django

if django.VERSION < (6, 0):  # pragma: no cover (collected only on Django 6)
    raise ImportError("django.tasks is new in Django 6.0")

from django.tasks import TaskContext, task

from django_realtime.tasks import aprogress, progress

#: The arguments of every run of :func:`count`, in this process.
CALLS: list[Any] = []


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def count(tag: str) -> str:
    CALLS.append(tag)
    return tag


@task
def fail(text: str) -> None:
    raise ValueError(text)


@task
def unserialisable() -> object:
    return object()


@task
def report(steps: int) -> str:
    for step in range(1, steps + 1):
        progress({"step": step})
    return "done"


@task(takes_context=True)
async def areport(context: TaskContext[Any, Any], steps: int) -> dict[str, Any]:
    for step in range(1, steps + 1):
        await aprogress({"step": step})
    return {"attempt": context.attempt, "id": context.task_result.id}


@task(takes_context=True)
async def hang_first_time(context: TaskContext[Any, Any]) -> int:
    if context.attempt == 1:
        await asyncio.sleep(3600)
    return context.attempt
