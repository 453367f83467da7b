"""Capacity planning: how many replicas for a target rate at a p99 SLO, and a check of the model.

The plan is ``replicas = ceil(target_rps x (1 + headroom) / per_replica_rps)``, where
``per_replica_rps`` is the max sustainable rate of ONE replica under the same p99 SLO, measured by
`harness.sweep.search`. The arithmetic is exact (decimal fractions, not binary floats), so an exact
division such as 1000 x 1.1 / 110 gives 10 replicas, not 11.

The per-replica rate is known as a bracket (`harness.sweep.figures`): the highest rate measured to
pass and the lowest known to fail. When the search did not converge (its time budget or probe cap
ran out) the rate is a lower bound, so the replica count is an upper bound; the plan says so on its
first line and gives the range the bracket allows: from ``ceil(required / lowest failing rate)``
(fewest, were the truth at the bracket's top) to the planned count.

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
from harness.sweep.figures import rate_from_search
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
    per_replica_rps: float  # the highest rate measured to pass: the figure the plan divides by
    required_rps: float  # target x (1 + headroom)
    replicas: int
    assumption: str = ASSUMPTION
    per_replica_converged: bool = True  # False: per_replica_rps is a lower bound, replicas an upper bound
    per_replica_upper_rps: float | None = None  # the lowest rate known to fail (None: none failed)
    fewest_replicas: int | None = None  # the count were the true rate at the bracket's top (None: unbounded)
    search_detail: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["per_replica_text"] = self.per_replica_text()
        data["bound_note"] = self.bound_note()
        return data

    def per_replica_text(self) -> str:
        """Return the per-replica rate for people: "548.7 rps", or "at least 548.7 rps (below 1005.7)"."""
        if self.per_replica_converged:
            return f"{self.per_replica_rps:.1f} rps"
        upper = f" (below {self.per_replica_upper_rps:.1f})" if self.per_replica_upper_rps else ""
        return f"at least {self.per_replica_rps:.1f} rps{upper}"

    def bound_note(self) -> str:
        """Return how far off the plan may be ("" when the search converged)."""
        if self.per_replica_converged:
            return ""
        if self.fewest_replicas is None:
            spread = "no rate failed, so the true per-replica rate may be far higher and fewer replicas may do"
        elif self.fewest_replicas == self.replicas:
            spread = f"every rate in the bracket gives the same {self.replicas} replica(s)"
        else:
            spread = f"between {self.fewest_replicas} and {self.replicas} replicas are needed"
        return (f"the per-replica search did not converge ({self.search_detail or 'stopped early'}): "
                f"{self.per_replica_text()} is a lower bound, so {self.replicas} replica(s) is an upper bound; {spread}")

    def describe(self) -> str:
        """Return the plan as one line for people (saying when its per-replica rate is a lower bound)."""
        line = (
            f"{self.replicas} replica(s) = ceil({self.target_rps:g} rps x (1 + {self.headroom:g}) / "
            f"{self.per_replica_rps:.2f} rps per replica at p99 <= {self.p99_ms:g} ms)"
        )
        return line if self.per_replica_converged else f"at most {line}; {self.bound_note()}"


def plan_capacity(target_rps: float, p99_ms: float, per_replica_rps: float, headroom: float = 0.3, *,
                  converged: bool = True, upper_rps: float | None = None, search_detail: str = "") -> CapacityPlan:
    """Return the `CapacityPlan` for a measured per-replica rate; raise ConfigError for invalid inputs.

    ``converged`` False marks ``per_replica_rps`` as a lower bound, ``upper_rps`` (the lowest rate
    known to fail) bounding it from above.
    """
    validate_capacity_inputs(target_rps, p99_ms, headroom)
    count = replicas_needed(target_rps, per_replica_rps, headroom)
    required = float(_exact(target_rps) * (1 + _exact(headroom)))
    fewest = count
    if not converged:
        fewest = replicas_needed(target_rps, upper_rps, headroom) if upper_rps and upper_rps > per_replica_rps else None
    return CapacityPlan(float(target_rps), float(p99_ms), float(headroom), float(per_replica_rps), required, count,
                        per_replica_converged=converged, per_replica_upper_rps=upper_rps, fewest_replicas=fewest,
                        search_detail=search_detail)


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
    converged: bool = True  # False: measured_rps (and the ratio) are lower bounds

    def to_dict(self) -> dict:
        data = asdict(self)
        data["measured"] = rate_from_search(self.search).text() if self.search else f"{self.measured_rps:.1f}"
        return data


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
    plan = plan_capacity(target_rps, p99_ms, per_replica, headroom, converged=single.converged,
                         upper_rps=single.upper_rps, search_detail=f"{single.stop_reason}: {single.detail}")
    first = ScalingPoint(1, per_replica, per_replica, 1.0, single.to_dict(), single.converged)
    points = [first]
    if on_point is not None:
        on_point(first)
    for count in choose_check_counts(plan.replicas, allowed_replicas)[1:]:
        result = measure_replicas(count)
        predicted = count * per_replica
        point = ScalingPoint(count, predicted, result.max_rate_rps, result.max_rate_rps / predicted, result.to_dict(),
                             result.converged)
        points.append(point)
        if on_point is not None:
            on_point(point)
    fits = plan.replicas <= allowed_replicas
    notes = [] if fits else [
        f"the plan needs {plan.replicas} replicas but this machine allows {allowed_replicas}; "
        f"linearity was checked up to {points[-1].replicas}"
    ]
    if not plan.per_replica_converged:
        notes.insert(0, plan.bound_note())
    unsure = [p.replicas for p in points[1:] if not p.converged]
    if unsure:
        notes.append(f"the search at {', '.join(map(str, unsure))} replica(s) did not converge: its measured rate and "
                     "ratio are lower bounds")
    limited = [p for p in points if p.search.get("stop_reason") == STOP_GENERATOR]
    if limited:
        # a generator-limited search measured the generator's ceiling: a lower bound of the service's rate
        why = "; ".join(f"at {p.replicas}: {p.search.get('detail', '')}" for p in limited)
        notes.append(f"the load generator limited the search at {', '.join(str(p.replicas) for p in limited)} replica(s): "
                     f"those rates are lower bounds, so the plan is conservative and their ratios do not judge linearity "
                     f"({why})")
    return CapacityCheck(plan, points, allowed_replicas, fits, "; ".join(notes))
