"""The pace of the Game of Life's cell clients: a token bucket, without a loop."""

import pytest

from example_project.life.pace import (
    CELL_BURST,
    CELL_RATE,
    PACE_BURST,
    PACE_RATE,
    Pacer,
)


def test_a_full_pacer_lets_a_burst_go_at_once_then_spaces_sends_at_the_rate() -> None:
    pacer = Pacer(rate=10, burst=3, now=100.0)

    waits = [pacer.take(100.0) for _ in range(5)]

    assert waits == [0.0, 0.0, 0.0, pytest.approx(0.1), pytest.approx(0.2)]


def test_sends_taken_in_a_row_wait_their_turn_and_idle_time_refills_the_burst() -> None:
    pacer = Pacer(rate=10, burst=2, now=0.0)
    pacer.take(0.0)
    pacer.take(0.0)
    assert pacer.take(0.0) == pytest.approx(0.1)
    # Its turn came: the next waits another tenth.
    assert pacer.take(0.1) == pytest.approx(0.1)

    # A second of quiet refills the bucket, no more than the burst.
    assert [pacer.take(1.2) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


def test_a_clock_that_goes_back_adds_no_tokens() -> None:
    pacer = Pacer(rate=10, burst=1, now=5.0)
    assert pacer.take(5.0) == 0.0

    assert pacer.take(4.0) == pytest.approx(0.1)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_a_pacer_that_could_never_send_is_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="Expected rate > 0 and burst >= 1"):
        Pacer(rate, burst, 0.0)


def test_cells_pace_themselves_under_what_the_server_allows() -> None:
    assert 0 < PACE_RATE < CELL_RATE
    assert 1 <= PACE_BURST < CELL_BURST
