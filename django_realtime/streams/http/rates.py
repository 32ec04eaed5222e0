"""The message rate of HTTP stream clients: a token bucket per client id.

A client of the HTTP transports sends its frames as ``POST`` requests,
which any process may serve; each process keeps a
:class:`~django_realtime.middleware.limits.TokenBucket` per client id that
posted to it, so one client sends at most ``rate`` frames a second on
average (``burst`` at once) to each process. A bucket unused for
``expiry`` seconds is forgotten: nothing stays of a client that left.

Pure: times are given as ``now``.
"""

from __future__ import annotations

from django_realtime.middleware.limits import TokenBucket

__all__ = ["ClientRates"]


class ClientRates:
    """Token buckets of clients by id, forgotten after ``expiry`` seconds unused.

    Args:
        rate: Frames a second each client may post on average.
        burst: Frames a client may post at once.
        expiry: Seconds after which an unused bucket is forgotten.

    Raises:
        ValueError: ``rate`` or ``burst`` is out of range.
    """

    def __init__(self, rate: float, burst: float, expiry: float) -> None:
        TokenBucket(rate, burst, 0.0)  # validate
        self.rate = rate
        self.burst = burst
        self.expiry = expiry
        self._buckets: dict[str, TokenBucket] = {}
        self._pruned_at_size = 64

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float) -> bool:
        """Take a token of ``client`` at ``now``; return whether there was one."""
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self._pruned_at_size:
                self.prune(now)
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def prune(self, now: float) -> int:
        """Forget the buckets unused for ``expiry`` seconds; return how many."""
        stale = [
            client
            for client, bucket in self._buckets.items()
            if now - bucket.updated > self.expiry
        ]
        for client in stale:
            del self._buckets[client]
        # Prune again once the table has doubled: amortised O(1) a take.
        self._pruned_at_size = max(64, 2 * len(self._buckets))
        return len(stale)
