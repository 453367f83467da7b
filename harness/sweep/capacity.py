"""Capacity planning: how many replicas for a target rate at a p99 SLO, and a check of the model.

The plan is ``replicas = ceil(target_rps x (1 + headroom) / per_replica_rps)``, where
``per_replica_rps`` is the max sustainable rate of ONE replica under the same p99 SLO, measured by
`harness.sweep.search`. The arithmetic is exact (decimal fractions, not binary floats), so an exact
division such as 1000 x 1.1 / 110 gives 10 replicas, not 11.

The check deploys the planned count where the machine allows it (else the largest count it
allows), measures the deployment's own max sustainable rate by the same search, and reports
measured / predicted: how far the linear model held. Deploying and measuring are injected
(``measure_replicas(count) -> SearchResult``) so the check is testable without processes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Callable

from harness.errors import ConfigError, HarnessError
from harness.sweep.search import STOP_GENERATOR, SearchResult

__all__ = [
    "ASSUMPTION",
    "MAX_HEADROOM",
    "MAX_REPLICAS",
    "CapacityPlan",
    "ScalingPoint",
    "CapacityCheck",
    "validate_capacity_inputs",
    "replicas_needed",
    "plan_capacity",
    "choose_check_counts",
    "check_linear_scaling",
]

MAX_HEADROOM = 10.0  # headroom is a fraction: 0.3 = 30 % spare; 10 (1000 %) is surely a typo
MAX_REPLICAS = 64  # the service spec's own limit

ASSUMPTION = (
    "Linear scaling: N replicas sustain N x the max rate one replica sustains under the same p99 SLO "
    "(measured, not assumed), i.e. no shared bottleneck (balancer, CPU cores, memory bandwidth, GPU, "
    "network) and traffic spread evenly over Ready replicas. Headroom covers bursts, a lost replica "
    "and measurement noise. The check below measures how far this held on this machine."
)


def _finite_number(field_name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(field_name, value, "must be a finite number")
    return float(value)


def validate_capacity_inputs(
    target_rps: float,
    p99_ms: float,
    headroom: float,
    max_replicas: int | None = None,
) -> None:
    """Raise ConfigError naming the first invalid input (field and value)."""
    if _finite_number("target_rps", target_rps) <= 0:
        raise ConfigError("target_rps", target_rps, "must be greater than zero")
    if _finite_number("p99_ms", p99_ms) <= 0:
        raise ConfigError("p99_ms", p99_ms, "must be greater than zero")
    if not 0 <= _finite_number("headroom", headroom) < MAX_HEADROOM:
        raise ConfigError("headroom", headroom, f"must lie in [0, {MAX_HEADROOM:g}) (a fraction: 0.3 = 30 % spare)")
    if max_replicas is not None:
        if isinstance(max_replicas, bool) or not isinstance(max_replicas, int) or not 1 <= max_replicas <= MAX_REPLICAS:
            raise ConfigError("max_replicas", max_replicas, f"must be an integer in [1, {MAX_REPLICAS}]")


def _exact(value: float) -> Fraction:
    # repr() gives the shortest decimal that round-trips, i.e. what the user typed (1.1, not 1.1000000000000000888)
    return Fraction(repr(float(value)))


def replicas_needed(target_rps: float, per_replica_rps: float, headroom: float = 0.3) -> int:
    """Return ``ceil(target_rps x (1 + headroom) / per_replica_rps)``, at least 1.

    Raises ConfigError for a non-positive or non-finite rate, or headroom outside [0, 10).
    """
    if _finite_number("target_rps", target_rps) <= 0:
        raise ConfigError("target_rps", target_rps, "must be greater than zero")
    if _finite_number("per_replica_rps", per_replica_rps) <= 0:
        raise ConfigError("per_replica_rps", per_replica_rps, "must be greater than zero (no rate met the SLO)")
    if not 0 <= _finite_number("headroom", headroom) < MAX_HEADROOM:
        raise ConfigError("headroom", headroom, f"must lie in [0, {MAX_HEADROOM:g})")
    required = _exact(target_rps) * (1 + _exact(headroom)) / _exact(per_replica_rps)
    return max(1, math.ceil(required))


@dataclass(frozen=True)
class CapacityPlan:
    """The replica count for a target, with the inputs and the assumption it rests on."""

    target_rps: float
    p99_ms: float
    headroom: float
    per_replica_rps: float
    required_rps: float  # target x (1 + headroom)
    replicas: int
    assumption: str = ASSUMPTION

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """Return the plan as one line for people."""
        return (
            f"{self.replicas} replica(s) = ceil({self.target_rps:g} rps x (1 + {self.headroom:g}) / "
            f"{self.per_replica_rps:.2f} rps per replica at p99 <= {self.p99_ms:g} ms)"
        )


def plan_capacity(target_rps: float, p99_ms: float, per_replica_rps: float, headroom: float = 0.3) -> CapacityPlan:
    """Return the `CapacityPlan` for a measured per-replica rate; raise ConfigError for invalid inputs."""
    validate_capacity_inputs(target_rps, p99_ms, headroom)
    count = replicas_needed(target_rps, per_replica_rps, headroom)
    required = float(_exact(target_rps) * (1 + _exact(headroom)))
    return CapacityPlan(float(target_rps), float(p99_ms), float(headroom), float(per_replica_rps), required, count)


def choose_check_counts(planned: int, allowed: int) -> list[int]:
    """Return the replica counts to measure: 1 (the per-replica rate), then the plan or the most allowed.

    When the plan needs one replica but the machine allows two, two are still measured, so the
    linear model is checked at all. Raises ConfigError for ``allowed`` < 1.
    """
    if isinstance(allowed, bool) or not isinstance(allowed, int) or allowed < 1:
        raise ConfigError("max_replicas", allowed, "must be an integer >= 1")
    target = min(max(planned, 2), allowed)
    return sorted({1, target})


@dataclass(frozen=True)
class ScalingPoint:
    """Measured vs predicted max sustainable rate for one replica count."""

    replicas: int
    predicted_rps: float
    measured_rps: float
    ratio: float  # measured / predicted: 1.0 is perfectly linear
    search: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CapacityCheck:
    """The plan and its check: per-replica rate, each count measured, and how far linearity held."""

    plan: CapacityPlan
    points: list[ScalingPoint]
    allowed_replicas: int
    planned_fits: bool  # whether the planned count itself could be deployed here
    note: str = ""

    @property
    def worst_ratio(self) -> float:
        ratios = [p.ratio for p in self.points if p.replicas > 1 and math.isfinite(p.ratio)]
        return min(ratios) if ratios else math.nan

    def to_dict(self) -> dict:
        return {
            "plan": self.plan.to_dict(),
            "allowed_replicas": self.allowed_replicas,
            "planned_fits": self.planned_fits,
            "points": [p.to_dict() for p in self.points],
            "worst_ratio": None if math.isnan(self.worst_ratio) else self.worst_ratio,
            "linear_model_error": None if math.isnan(self.worst_ratio) else 1.0 - self.worst_ratio,
            "note": self.note,
        }


def check_linear_scaling(
    measure_replicas: Callable[[int], SearchResult],
    *,
    target_rps: float,
    p99_ms: float,
    headroom: float = 0.3,
    allowed_replicas: int = 2,
    on_point: Callable[[ScalingPoint], None] | None = None,
) -> CapacityCheck:
    """Measure one replica, plan from it, then measure the chosen larger count; return the check.

    ``measure_replicas(count)`` deploys ``count`` replicas and returns the search result of their
    max sustainable rate under ``p99_ms``. Raises ConfigError for invalid inputs and HarnessError
    when one replica sustains no rate under the SLO (nothing to plan from).
    """
    validate_capacity_inputs(target_rps, p99_ms, headroom, allowed_replicas)
    single = measure_replicas(1)
    per_replica = single.max_rate_rps
    if per_replica <= 0:
        raise HarnessError(f"one replica sustained no rate under p99 <= {p99_ms:g} ms ({single.detail}); nothing to plan from")
    plan = plan_capacity(target_rps, p99_ms, per_replica, headroom)
    first = ScalingPoint(1, per_replica, per_replica, 1.0, single.to_dict())
    points = [first]
    if on_point is not None:
        on_point(first)
    for count in choose_check_counts(plan.replicas, allowed_replicas)[1:]:
        result = measure_replicas(count)
        predicted = count * per_replica
        point = ScalingPoint(count, predicted, result.max_rate_rps, result.max_rate_rps / predicted, result.to_dict())
        points.append(point)
        if on_point is not None:
            on_point(point)
    fits = plan.replicas <= allowed_replicas
    notes = [] if fits else [
        f"the plan needs {plan.replicas} replicas but this machine allows {allowed_replicas}; "
        f"linearity was checked up to {points[-1].replicas}"
    ]
    limited = [p.replicas for p in points if p.search.get("stop_reason") == STOP_GENERATOR]
    if limited:
        # a generator-limited search measured the generator's ceiling: a lower bound of the service's rate
        notes.append(f"the load generator limited the search at {', '.join(map(str, limited))} replica(s): those rates "
                     "are lower bounds, so the plan is conservative and their ratios do not judge linearity")
    return CapacityCheck(plan, points, allowed_replicas, fits, "; ".join(notes))
