"""The replay budget: a token bucket in bytes that may go into debt."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from django_realtime.streams.budget import ReplayBudget


def test_the_budget_starts_full_and_a_read_may_take_it_into_debt() -> None:
    budget = ReplayBudget(rate=100, burst=1000, now=0.0)
    assert budget.ready(0.0)
    budget.charge(1500, 0.0)
    assert not budget.ready(0.0)
    assert budget.ready_at(0.0) == pytest.approx(5.0)
    assert not budget.ready(4.9)
    assert budget.ready(5.0)


def test_the_budget_refills_no_higher_than_the_burst() -> None:
    budget = ReplayBudget(rate=100, burst=1000, now=0.0)
    budget.charge(1000, 0.0)
    assert budget.ready(1000.0)
    budget.charge(1000, 1000.0)
    budget.charge(1, 1000.0)
    assert not budget.ready(1000.0)


def test_without_a_rate_the_budget_never_runs_out() -> None:
    budget = ReplayBudget(rate=None, burst=1, now=0.0)
    budget.charge(10**9, 0.0)
    assert budget.ready(0.0)
    assert budget.ready_at(0.0) == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_budget_needs_a_positive_rate_and_burst(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="Expected a replay rate > 0"):
        ReplayBudget(rate, burst, 0.0)


@given(
    st.lists(st.tuples(st.floats(0, 10), st.integers(1, 5000)), min_size=1, max_size=50)
)
def test_what_is_replayed_over_a_span_stays_within_burst_rate_and_one_read(
    reads: list[tuple[float, int]],
) -> None:
    """Reads start only when the budget is ready: the total stays bounded."""
    rate, burst = 1000.0, 2000.0
    budget = ReplayBudget(rate, burst, 0.0)
    now, total, largest = 0.0, 0, 0
    for pause, cost in reads:
        now = budget.ready_at(now + pause)
        assert budget.ready(now)
        budget.charge(cost, now)
        total += cost
        largest = max(largest, cost)
    assert total <= burst + rate * now + largest
