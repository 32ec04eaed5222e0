"""The one rule of delivery, decide(), and the outbox it governs, without a loop."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from django_realtime.delivery.outbox import Outbox
from django_realtime.delivery.sends import (
    AT_COMMIT,
    DROP,
    FAILED,
    HOLD,
    REFUSED,
    RETURNED,
    SEND,
    STOPPED,
    decide,
    route,
    settle,
)

FLAGS = list(itertools.product([False, True], repeat=3))


@pytest.mark.parametrize(("held", "immediately", "in_transaction"), FLAGS)
def test_immediately_sends_now_whatever_the_handler_or_transaction(
    held: bool, immediately: bool, in_transaction: bool
) -> None:
    if immediately:
        assert decide(held, immediately, in_transaction) == SEND


@pytest.mark.parametrize("held", [False, True])
def test_a_send_inside_a_transaction_waits_for_the_commit(held: bool) -> None:
    assert decide(held, in_transaction=True) == AT_COMMIT


def test_a_send_inside_a_handler_is_held() -> None:
    assert decide(True) == HOLD


def test_a_send_outside_handlers_and_transactions_goes_out_now() -> None:
    assert decide(False) == SEND


@pytest.mark.parametrize("outcome", [RETURNED, STOPPED])
@pytest.mark.parametrize(
    ("immediately", "in_transaction"), list(itertools.product([False, True], repeat=2))
)
def test_what_a_handler_held_goes_out_when_it_returns_or_stops(
    outcome: Any, immediately: bool, in_transaction: bool
) -> None:
    # The flags of the original sends no longer matter once it has ended.
    assert decide(True, immediately, in_transaction, outcome) == SEND


@pytest.mark.parametrize("outcome", [FAILED, REFUSED])
def test_what_a_handler_held_is_dropped_when_it_fails_or_refuses(
    outcome: Any,
) -> None:
    assert decide(True, outcome=outcome) == DROP


def test_every_combination_has_exactly_one_decision() -> None:
    outcomes: list[Any] = [None, RETURNED, STOPPED, FAILED, REFUSED]
    decisions = {
        decide(held, immediately, in_transaction, outcome)
        for (held, immediately, in_transaction), outcome in itertools.product(
            FLAGS, outcomes
        )
    }
    assert decisions == {SEND, HOLD, AT_COMMIT, DROP}


# settle(): the rule carried out on what an outbox holds.


def filled(*items: str) -> Outbox:
    outbox = Outbox(owner="consumer")
    for item in items:
        outbox.add((print, (item,)))
    return outbox


def test_settle_returns_what_a_returning_handler_held_in_order_and_closes() -> None:
    outbox = filled("a", "b")
    assert [args for _, args in settle(outbox, RETURNED)] == [("a",), ("b",)]
    assert not outbox.is_open


@pytest.mark.parametrize("outcome", [FAILED, REFUSED])
def test_settle_drops_what_a_failed_or_refusing_handler_held(outcome: Any) -> None:
    outbox = filled("a", "b")
    assert settle(outbox, outcome) == []
    assert outbox.messages == []
    assert not outbox.is_open


def test_settle_since_a_mark_drops_only_what_the_failed_part_held() -> None:
    outbox = filled("before", "part 1", "part 2")
    assert settle(outbox, FAILED, since=1) == []
    assert [args for _, args in outbox.messages] == [("before",)]
    assert outbox.is_open


def test_settle_since_a_mark_keeps_what_a_returning_part_held_for_the_handler() -> None:
    outbox = filled("before", "part")
    assert settle(outbox, RETURNED, since=1) == []
    assert len(outbox.messages) == 2
    assert outbox.is_open


# route(): the async shell, on its paths that need no loop.


async def never_called(*args: Any) -> None:
    raise AssertionError("sent")


def test_route_holds_a_send_inside_a_handler_and_returns_nothing_to_await() -> None:
    outbox = filled()
    assert route(outbox, never_called, ("x",)) is None
    assert outbox.messages == [(never_called, ("x",))]


def test_route_sends_held_messages_first_when_asked_to_send_immediately() -> None:
    outbox = filled("held")
    sending = route(outbox, never_called, ("now",), immediately=True)
    assert sending is not None
    assert outbox.messages == []  # taken, to be sent before "now"
    sending.close()  # type: ignore[attr-defined]
