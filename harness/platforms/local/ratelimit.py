"""The front balancer's rate limiter: one token bucket for every request the Service receives.

The bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second; each request takes
one. A request that finds the bucket empty is refused at once (the balancer answers 429 with
``Retry-After``, the whole seconds until a token is there again) instead of waiting in a queue, so
what is admitted keeps the latency of a service below its capacity. The bucket starts full.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["TokenBucket", "RATE_LIMITED_ERROR"]

RATE_LIMITED_ERROR = "rate limit exceeded"


class TokenBucket:
    """A token bucket of ``burst`` tokens refilled at ``rate`` per second (``clock``: monotonic seconds)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"rate={rate!r}, burst={burst!r}: both must be positive")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self.admitted = 0
        self.refused = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> float:
        """Take a token; return 0.0 when one was there (admitted), else the seconds until the next one."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.admitted += 1
            return 0.0
        self.refused += 1
        return (1.0 - self._tokens) / self.rate

    @staticmethod
    def retry_after_s(wait_s: float) -> int:
        """Return the ``Retry-After`` value for a wait: whole seconds, at least 1."""
        return max(1, math.ceil(wait_s))

    def stats(self) -> dict[str, float | int]:
        """Return the limiter's settings and counters."""
        return {"rate": self.rate, "burst": self.burst, "admitted": self.admitted, "refused": self.refused}
