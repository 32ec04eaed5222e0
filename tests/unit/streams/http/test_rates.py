"""Per-client POST rates of the HTTP transports, without a loop."""

from __future__ import annotations

import pytest

from django_realtime.streams.http.rates import ClientRates


def test_each_client_has_its_own_bucket() -> None:
    rates = ClientRates(rate=1, burst=2, expiry=60)
    assert [rates.take("a", 0.0) for _ in range(3)] == [True, True, False]
    assert rates.take("b", 0.0)
    assert rates.take("a", 1.0)


def test_buckets_unused_for_the_expiry_are_forgotten() -> None:
    rates = ClientRates(rate=1, burst=1, expiry=60)
    for n in range(100):
        rates.take(f"client-{n}", 0.0)
    assert rates.prune(30.0) == 0
    assert rates.prune(61.0) == 100
    assert len(rates) == 0


def test_the_table_prunes_itself_as_it_grows() -> None:
    rates = ClientRates(rate=1, burst=1, expiry=60)
    for n in range(64):
        rates.take(f"old-{n}", 0.0)
    rates.take("new", 100.0)
    assert len(rates) == 1


def test_a_bad_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        ClientRates(rate=0, burst=1, expiry=60)
