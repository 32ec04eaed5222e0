"""The sync pool: parallel across connections, and never blocking exit.

Each promise holds on both paths to the pool: the short hop (asgiref
internals, within the versions checked) and asgiref's public SyncToAsync
(taken outside those versions).
"""

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.utils import translation

from django_realtime.delivery import sync
from django_realtime.delivery.sync import is_pool_thread, run_sync, shutdown_executor

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True, params=["short hop", "public SyncToAsync"])
def path_to_the_pool(request: pytest.FixtureRequest, monkeypatch) -> None:
    """Run each test on both paths to the pool."""
    monkeypatch.setattr(sync, "_short_hop", request.param == "short hop")


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


async def test_run_sync_returns_the_result_from_a_pool_thread():
    ident = await run_sync(threading.get_ident)
    assert ident != threading.get_ident()
    assert is_pool_thread(ident)


async def test_run_sync_raises_what_the_function_raised():
    def fail():
        raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        await run_sync(fail)


async def test_shutdown_stops_the_threads_and_the_next_call_starts_a_new_pool():
    old = await run_sync(threading.get_ident)
    await asyncio.to_thread(shutdown_executor)
    assert not is_pool_thread(old)
    new = await run_sync(threading.get_ident)
    assert is_pool_thread(new)


async def test_many_concurrent_calls_each_get_their_own_result():
    def square(n: int) -> int:
        return n * n

    results = await asyncio.gather(*(run_sync(square, n) for n in range(500)))

    assert results == [n * n for n in range(500)]


async def test_context_variables_go_into_the_call_and_its_changes_come_back():
    request_id.set("outer")

    def swap() -> str:
        seen = request_id.get()
        request_id.set("inner")
        return seen

    assert await run_sync(swap) == "outer"
    assert request_id.get() == "inner"


async def test_async_to_sync_in_the_call_runs_on_the_callers_loop():
    caller_loop = asyncio.get_running_loop()

    async def which_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def call() -> asyncio.AbstractEventLoop:
        return async_to_sync(which_loop)()

    assert await run_sync(call) is caller_loop


async def test_a_translation_activated_on_the_loop_is_active_in_the_call():
    translation.activate("fr")
    try:
        assert await run_sync(translation.get_language) == "fr"
    finally:
        translation.deactivate()


async def test_a_cancelled_caller_waits_for_the_call_to_finish():
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.3)
        finished.set()

    task = asyncio.create_task(run_sync(slow))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert finished.is_set()


STRANDED = textwrap.dedent(
    """
    import asyncio

    from asgiref.sync import async_to_sync
    from django.conf import settings

    settings.configure()

    from django_realtime.delivery import sync
    from django_realtime.delivery.sync import run_sync

    sync._short_hop = SHORT_HOP

    async def never():
        await asyncio.Event().wait()

    def handler():
        # A sync handler waiting on the event loop, as group_discard() in
        # disconnect() does.
        async_to_sync(never)()

    async def main():
        asyncio.get_running_loop().create_task(run_sync(handler))
        await asyncio.sleep(0.2)

    # Like daphne on SIGTERM: the loop stops with the handler still waiting.
    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    print("exiting", flush=True)
    """
)


def test_a_handler_stranded_by_a_stopped_loop_does_not_block_exit():
    script = STRANDED.replace("SHORT_HOP", repr(sync._short_hop))
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.stdout == "exiting\n", result.stderr
    assert result.returncode == 0, result.stderr
