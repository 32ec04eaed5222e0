"""The line of receivers waiting on each channel, without running a loop.

The futures belong to an event loop that never runs: the bookkeeping only
sets results, and tests read them back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from django_realtime.layers._waiters import Waiters


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def woken(*futures: asyncio.Future[None]) -> list[bool]:
    return [future.done() and not future.cancelled() for future in futures]


def test_a_wake_goes_to_the_oldest_waiter_and_the_rest_keep_their_place(
    loop: asyncio.AbstractEventLoop,
) -> None:
    waiters = Waiters()
    first, second, third = (loop.create_future() for _ in range(3))
    for waiter in (first, second, third):
        waiters.add("chan", waiter)

    waiters.wake("chan")

    assert woken(first, second, third) == [True, False, False]
    assert waiters == {"chan": [second, third]}


def test_a_channel_leaves_the_map_with_its_last_waiter(
    loop: asyncio.AbstractEventLoop,
) -> None:
    waiters = Waiters()
    waiter = loop.create_future()
    waiters.add("chan", waiter)

    waiters.wake("chan")
    waiters.wake("chan")  # nobody left: nothing to do

    assert woken(waiter) == [True]
    assert waiters == {}
    assert not waiters


def test_a_wake_passes_over_waiters_already_done_or_of_a_closed_loop(
    loop: asyncio.AbstractEventLoop,
) -> None:
    waiters = Waiters()
    ended_loop = asyncio.new_event_loop()
    stranded = ended_loop.create_future()
    ended_loop.close()
    cancelled, live = loop.create_future(), loop.create_future()
    cancelled.cancel()
    for waiter in (cancelled, stranded, live):
        waiters.add("chan", waiter)

    waiters.wake("chan")

    assert woken(stranded, live) == [False, True]
    assert waiters == {}


def test_wake_each_wakes_one_waiter_on_every_channel_that_has_any(
    loop: asyncio.AbstractEventLoop,
) -> None:
    waiters = Waiters()
    a1, a2, b1 = (loop.create_future() for _ in range(3))
    waiters.add("a", a1)
    waiters.add("a", a2)
    waiters.add("b", b1)

    waiters.wake_each(["a", "idle", "b"])

    assert woken(a1, a2, b1) == [True, False, True]
    assert waiters == {"a": [a2]}


def test_a_cancelled_waiter_is_forgotten_and_its_channel_with_it(
    loop: asyncio.AbstractEventLoop,
) -> None:
    waiters = Waiters()
    first, second = loop.create_future(), loop.create_future()
    waiters.add("chan", first)
    waiters.add("chan", second)

    second.cancel()
    waiters.forget("chan", second)
    assert waiters == {"chan": [first]}
    first.cancel()
    waiters.forget("chan", first)

    assert waiters == {}
    waiters.forget("chan", first)  # forgetting twice is harmless
    assert waiters == {}


def test_a_woken_waiter_that_is_forgotten_passes_its_wake_to_the_next(
    loop: asyncio.AbstractEventLoop,
) -> None:
    waiters = Waiters()
    first, second = loop.create_future(), loop.create_future()
    waiters.add("chan", first)
    waiters.add("chan", second)
    waiters.wake("chan")  # a message for ``first``...

    waiters.forget("chan", first)  # ...whose receive was cancelled before it ran

    assert woken(first, second) == [True, True]
    assert waiters == {}
