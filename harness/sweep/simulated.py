"""A simulated service with a known knee: a stand-in for a deployment when testing searches and sweeps.

Like httpx's built-in fake transport, it lets the rate search, the capacity check and the sweep
runner be exercised in milliseconds and deterministically. Latency follows an M/D/1 queue (Poisson
arrivals, deterministic service time ``1/capacity``): the mean wait is ``rho * D / (2 (1 - rho))``
and the wait's tail is taken as exponential, so ``p99 = base + D * ln(100) / 2 * rho / (1 - rho)``.
Above capacity the bounded queue is full (steady state): p99 is the full queue's wait, and the
excess over capacity is shed as errors.
Because the p99 curve is analytic, the max rate under a p99 SLO has a closed form
(`SimulatedService.knee_rps`), which is what tests compare a search against. `SimulatedLlm` does the same
for a generative service: its TTFT and ITL knees under a token SLO have a closed form too.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from harness.sweep.search import PointMeasurement

__all__ = ["SimulatedService", "SimulatedLlm"]

_TAIL = math.log(100.0) / 2.0  # p99 of an exponential tail over the M/D/1 mean-wait factor


@dataclass
class SimulatedService:
    """A service of ``capacity_rps`` whose measurements carry seeded multiplicative noise."""

    capacity_rps: float
    base_ms: float = 20.0
    noise: float = 0.03  # relative standard deviation of p99 and throughput
    seed: int = 0
    queue_limit: int = 256
    generator_limit_rps: float | None = None  # the generator cannot send faster than this
    calls: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def service_ms(self) -> float:
        """Deterministic service time per request, in milliseconds."""
        return 1000.0 / self.capacity_rps

    def p99_ms_at(self, rate_rps: float) -> float:
        """Return the noiseless p99 latency (ms) at an offered rate (inf at or above capacity)."""
        rho = rate_rps / self.capacity_rps
        if rho >= 1.0:
            return math.inf
        return self.base_ms + self.service_ms * _TAIL * rho / (1.0 - rho)

    def knee_rps(self, p99_slo_ms: float) -> float:
        """Return the exact max rate whose noiseless p99 meets ``p99_slo_ms`` (0 if even idle misses it)."""
        if p99_slo_ms <= self.base_ms:
            return 0.0
        x = (p99_slo_ms - self.base_ms) / (self.service_ms * _TAIL)
        return self.capacity_rps * x / (1.0 + x)

    def _jitter(self, scale: float = 1.0) -> float:
        return math.exp(self._rng.gauss(0.0, self.noise * scale))

    def measure(self, rate_rps: float) -> PointMeasurement:
        """Return one noisy measurement at ``rate_rps`` (the `measure` callable a search takes)."""
        self.calls.append(rate_rps)
        sent = rate_rps
        lagged = False
        if self.generator_limit_rps is not None and rate_rps > self.generator_limit_rps:
            sent, lagged = self.generator_limit_rps, True
        rho = sent / self.capacity_rps
        if rho < 1.0:
            p99 = self.p99_ms_at(sent) * self._jitter()
            throughput = sent * min(1.0, self._jitter(1 / 3))  # completions track the sent rate closely
            errors = 0.0
        else:
            # steady state of an overloaded bounded queue: it stays full and sheds the excess
            p99 = (self.base_ms + self.queue_limit * self.service_ms) * self._jitter()
            throughput = self.capacity_rps * min(1.0, self._jitter(1 / 3))
            errors = (sent - self.capacity_rps) / sent
        p50 = self.base_ms + (p99 - self.base_ms) * 0.15
        p95 = self.base_ms + (p99 - self.base_ms) * 0.65
        return PointMeasurement(
            rate_rps=rate_rps, throughput_rps=throughput, p99_ms=p99, error_rate=errors,
            p50_ms=p50, p95_ms=p95, sent_rate_rps=sent, generator_saturated=lagged,
        )


@dataclass
class SimulatedLlm:
    """A generative service with known TTFT and ITL knees, for the goodput search (`SearchSettings.min_good_share`).

    A request's TTFT is ``ttft_base_ms`` plus a queueing wait, exponential with the M/D/1 mean
    ``D rho / (2 (1 - rho))`` (``D = 1/capacity``): ``P(TTFT <= b) = 1 - exp(-(b - base) / mean)``. Its
    inter-token gaps grow with the batch the engine carries, ``itl = itl_base_ms (1 + itl_growth rho)``, the
    same for every request: within an ITL bound below a rate, beyond it above. The good share is the TTFT
    share while the gaps meet the ITL bound, else 0; `knee_rps` is the closed-form max rate whose good share
    meets a target, what a search is compared against.
    """

    capacity_rps: float
    ttft_base_ms: float = 40.0
    itl_base_ms: float = 10.0
    itl_growth: float = 3.0
    noise: float = 0.02  # relative standard deviation of the good share's shortfall and the throughput
    seed: int = 0
    calls: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _mean_wait_ms(self, rho: float) -> float:
        return 1000.0 / self.capacity_rps * rho / (2.0 * (1.0 - rho))

    def itl_ms_at(self, rate_rps: float) -> float:
        """Return the inter-token gap (ms) at an offered rate."""
        return self.itl_base_ms * (1.0 + self.itl_growth * min(rate_rps / self.capacity_rps, 1.0))

    def good_share_at(self, rate_rps: float, ttft_ms: float, itl_ms: float) -> float:
        """Return the noiseless share of requests meeting both bounds at ``rate_rps``."""
        rho = rate_rps / self.capacity_rps
        if rho >= 1.0 or self.itl_ms_at(rate_rps) > itl_ms or ttft_ms <= self.ttft_base_ms:
            return 0.0
        return 1.0 - math.exp(-(ttft_ms - self.ttft_base_ms) / max(self._mean_wait_ms(rho), 1e-12))

    def knee_rps(self, ttft_ms: float, itl_ms: float, share: float) -> float:
        """Return the exact max rate whose noiseless good share is at least ``share`` (0 if none)."""
        if ttft_ms <= self.ttft_base_ms or itl_ms < self.itl_base_ms:
            return 0.0
        c = (ttft_ms - self.ttft_base_ms) / math.log(1.0 / (1.0 - share)) * 2.0 * self.capacity_rps / 1000.0
        ttft_knee = self.capacity_rps * c / (1.0 + c)  # the mean wait equals the largest one the share allows
        itl_knee = self.capacity_rps * (itl_ms / self.itl_base_ms - 1.0) / self.itl_growth
        return min(ttft_knee, itl_knee, self.capacity_rps)

    def measurer(self, ttft_ms: float, itl_ms: float):
        """Return the ``measure(rate_rps)`` callable of a search judged by these bounds."""
        def measure(rate_rps: float) -> PointMeasurement:
            self.calls.append(rate_rps)
            rho = rate_rps / self.capacity_rps
            share = self.good_share_at(rate_rps, ttft_ms, itl_ms)
            share = max(0.0, 1.0 - (1.0 - share) * math.exp(self._rng.gauss(0.0, self.noise)))
            served = min(rate_rps, self.capacity_rps) * min(1.0, math.exp(self._rng.gauss(0.0, self.noise / 3)))
            errors = max(0.0, (rate_rps - self.capacity_rps) / rate_rps)
            wait = self._mean_wait_ms(rho) if rho < 1.0 else 10_000.0
            return PointMeasurement(
                rate_rps=rate_rps, throughput_rps=served, p99_ms=self.ttft_base_ms + wait * math.log(100.0),
                error_rate=errors, sent_rate_rps=rate_rps, good_share=share, goodput_rps=served * share,
                ttft_p99_ms=self.ttft_base_ms + wait * math.log(100.0), itl_p99_ms=self.itl_ms_at(rate_rps),
            )

        return measure
