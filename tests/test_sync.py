"""The sync pool: parallel across connections, and never blocking exit."""

import asyncio
import subprocess
import sys
import textwrap
import threading

import pytest

from django_realtime.sync import is_pool_thread, run_sync, shutdown_executor

pytestmark = pytest.mark.timeout(30)


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


STRANDED = textwrap.dedent(
    """
    import asyncio

    from asgiref.sync import async_to_sync
    from django.conf import settings

    settings.configure()

    from django_realtime.sync import run_sync

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
    result = subprocess.run(
        [sys.executable, "-c", STRANDED],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.stdout == "exiting\n", result.stderr
    assert result.returncode == 0, result.stderr
