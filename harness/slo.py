"""The service-level objective (SLO) every workflow judges by, and its defaults: the one place they are written.

Definitions (reports quote these):

- **SLO**: a p99 latency bound ``p99_ms`` (default 500 ms, the source material's alert threshold for
  p99 inference latency) and an error-rate bound ``max_error_rate`` (default 0.01: at least 99% of
  requests answered). A *request meets the SLO* when it succeeded (a 2xx answer) within ``p99_ms``
  of its send time (the intended send time under open-loop load, so a request that waited in the
  generator's queue is late too); a failed request (an error status, a timeout, no answer) never
  meets it, whatever its latency. A *run meets the SLO* (a load, a sweep point, a search probe)
  when the exact p99 latency of its successful requests (`harness.measure.percentiles`) is at most
  ``p99_ms`` and the share of its requests that failed is at most ``max_error_rate``. The same
  latency bound judges one request wherever one is judged: a prober sample during chaos (good or
  bad, `harness.measure.recovery`), the goodput of a load spike (`harness.measure.overload`), a
  canary's analysis.

- **Token SLO** (generative, OpenAI-compatible targets; `TokenSlo`): optional bounds on a request's
  time to first token ``ttft_ms``, time per output token ``tpot_ms``, inter-token latency ``itl_ms``
  (every gap between two output events of the request: its longest gap) and end-to-end latency
  ``e2e_ms`` (unset: the SLO's ``p99_ms``, the bound a request meets the SLO by). No defaults: an
  unset TTFT, TPOT or ITL bound does not judge. A request is **good** when it succeeded and meets every bound that is
  set (a TPOT that is undefined, for one output token, meets the TPOT bound, as a request with no gap
  meets the ITL bound; a TTFT that is
  undefined, for no output token, does not meet a TTFT bound); a failed request, a stream cut
  mid-response included, is never good. **Goodput** is good requests per second of the load
  (`harness.measure.tokens`).

The SLO is what a run is judged against; the SLA tiers (`harness.measure.sla`) are error budgets
over a month, judged beside it. How one load is judged against both is `harness.measure.load_verdict`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from harness.errors import ConfigError

__all__ = ["DEFAULT_P99_MS", "DEFAULT_MAX_ERROR_RATE", "Slo", "TokenSlo", "validate_slo"]

DEFAULT_P99_MS = 500.0
DEFAULT_MAX_ERROR_RATE = 0.01


@dataclass(frozen=True)
class Slo:
    """A p99 latency bound in ms and an error-rate bound (a fraction of requests); see the module docstring.

    Raises ConfigError naming the field and the value when either is out of range (on construction).
    """

    p99_ms: float = DEFAULT_P99_MS
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE

    def __post_init__(self) -> None:
        validate_slo(self.p99_ms, self.max_error_rate)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "Slo":
        """Return the SLO saved as ``{"p99_ms": ..., "max_error_rate": ...}`` (a missing or null field
        takes its default); raise ConfigError for a bad value."""
        data = data or {}
        p99 = data.get("p99_ms")
        rate = data.get("max_error_rate")
        return cls(DEFAULT_P99_MS if p99 is None else p99, DEFAULT_MAX_ERROR_RATE if rate is None else rate)

    def describe(self) -> str:
        """Return the SLO in words: "p99 <= 500 ms, errors <= 1%"."""
        return f"p99 <= {self.p99_ms:g} ms, errors <= {self.max_error_rate:.2%}".replace(".00%", "%")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_slo(p99_ms: Any, max_error_rate: Any) -> None:
    """Raise ConfigError naming the first bad field: ``p99_ms`` must be a finite number > 0,
    ``max_error_rate`` a number in [0, 1]."""
    if not (_is_number(p99_ms) and p99_ms > 0):
        raise ConfigError("p99_ms", p99_ms, "the p99 latency SLO must be a finite number of milliseconds greater than zero")
    if not (_is_number(max_error_rate) and 0 <= max_error_rate <= 1):
        raise ConfigError("max_error_rate", max_error_rate, "the error-rate SLO must be a fraction from 0 to 1 (0.01 is 1%)")


@dataclass(frozen=True)
class TokenSlo:
    """Optional per-request bounds of a generative load, in ms (see "Token SLO" in the module docstring).

    Raises ConfigError naming the field and the value when a bound is set and is not a finite number > 0.
    """

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None  # None: the SLO's p99_ms
    itl_ms: float | None = None  # every inter-token gap of a good request

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms", "e2e_ms", "itl_ms"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                raise ConfigError(name, value, "a per-request bound must be a finite number of milliseconds greater than zero")

    def bounds(self, slo: Slo) -> dict[str, float | None]:
        """Return the bounds a request is judged by under ``slo``: ttft_ms, tpot_ms (None: not judged), e2e_ms,
        and itl_ms where it is set."""
        bounds = {"ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms,
                  "e2e_ms": self.e2e_ms if self.e2e_ms is not None else slo.p99_ms}
        return {**bounds, "itl_ms": self.itl_ms} if self.itl_ms is not None else bounds

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)
