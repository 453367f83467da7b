"""The replica formula, its input validation, and the linear-scaling check on simulated replicas."""

from __future__ import annotations

import math

import pytest

from harness.errors import ConfigError, HarnessError
from harness.sweep.capacity import (
    ASSUMPTION,
    check_linear_scaling,
    choose_check_counts,
    plan_capacity,
    replicas_needed,
)
from harness.sweep.search import SearchSettings, search_max_rate
from harness.sweep.simulated import SimulatedService


@pytest.mark.parametrize(
    ("target", "per_replica", "headroom", "expected"),
    [
        (2000, 100, 0.3, 26),  # 2600 / 100 exactly
        (2000, 100, 0.0, 20),  # headroom 0, exact division
        (2001, 100, 0.0, 21),  # just over a multiple
        (1000, 110, 0.1, 10),  # 1100 / 110 = 10 exactly; binary floats would give 10.000000000000002
        (300, 100, 0.1, 4),  # 330 / 100
        (0.001, 50, 0.3, 1),  # a tiny rate still needs one replica
        (1e-9, 1e-9, 0.0, 1),  # tiny on both sides, exact
        (99.99, 33.33, 0.0, 3),  # 2.99999... -> 3 (exactly 3.0 in decimal)
        (5, 2.5, 9.99, 22),  # headroom just under the limit: 5 x 10.99 / 2.5 = 21.98
    ],
)
def test_replicas_needed_formula(target, per_replica, headroom, expected):
    assert replicas_needed(target, per_replica, headroom) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(target_rps=-5, per_replica_rps=10, headroom=0.3), "target_rps"),
        (dict(target_rps=0, per_replica_rps=10, headroom=0.3), "target_rps"),
        (dict(target_rps=math.inf, per_replica_rps=10, headroom=0.3), "target_rps"),
        (dict(target_rps=10, per_replica_rps=0, headroom=0.3), "per_replica_rps"),
        (dict(target_rps=10, per_replica_rps=math.nan, headroom=0.3), "per_replica_rps"),
        (dict(target_rps=10, per_replica_rps=10, headroom=-0.1), "headroom"),
        (dict(target_rps=10, per_replica_rps=10, headroom=10), "headroom"),
    ],
)
def test_invalid_inputs_name_field_and_value(kwargs, field):
    with pytest.raises(ConfigError) as info:
        replicas_needed(**kwargs)
    assert info.value.field == field
    assert repr(kwargs[field]) in str(info.value)


def test_plan_states_the_assumption_and_required_rate():
    plan = plan_capacity(target_rps=2000, p99_ms=500, per_replica_rps=120.0, headroom=0.3)
    assert plan.replicas == 22  # ceil(2600 / 120) = ceil(21.67)
    assert plan.required_rps == pytest.approx(2600)
    assert plan.assumption == ASSUMPTION and "Linear scaling" in plan.assumption
    assert "22 replica(s)" in plan.describe()
    with pytest.raises(ConfigError) as info:
        plan_capacity(target_rps=10, p99_ms=-1, per_replica_rps=5)
    assert info.value.field == "p99_ms"


@pytest.mark.parametrize(("planned", "allowed", "counts"), [(5, 2, [1, 2]), (1, 2, [1, 2]), (3, 8, [1, 3]), (4, 1, [1])])
def test_check_counts_measure_one_then_the_plan_or_the_most_allowed(planned, allowed, counts):
    assert choose_check_counts(planned, allowed) == counts


def _simulated_replicas(per_replica_capacity: float, efficiency: float, measured: list[int]):
    settings = SearchSettings(p99_ms=500.0, start_rps=10.0, rel_tol=0.03)

    def measure_replicas(count: int):
        measured.append(count)
        # N replicas behave as one service of N x the capacity, less a shared-bottleneck loss
        capacity = per_replica_capacity * (count if count == 1 else count * efficiency)
        return search_max_rate(SimulatedService(capacity, noise=0.0, seed=count).measure, settings)

    return measure_replicas


def test_linear_scaling_check_reports_measured_vs_predicted():
    measured: list[int] = []
    check = check_linear_scaling(
        _simulated_replicas(100.0, efficiency=0.8, measured=measured),
        target_rps=300, p99_ms=500, headroom=0.3, allowed_replicas=2,
    )
    assert measured == [1, 2]
    per_replica = check.points[0].measured_rps
    assert check.plan.per_replica_rps == per_replica
    assert check.plan.replicas == math.ceil(390 / per_replica)
    two = check.points[1]
    assert two.replicas == 2 and two.predicted_rps == pytest.approx(2 * per_replica)
    # 2 replicas at 80 % efficiency: the measured/predicted ratio shows the 20 % loss (within the search tolerance)
    assert two.ratio == pytest.approx(0.8, abs=0.06)
    assert not check.planned_fits and "allows 2" in check.note
    data = check.to_dict()
    assert data["worst_ratio"] == two.ratio and data["points"][1]["search"]["converged"]


def test_linear_scaling_check_without_any_sustainable_rate_fails_clearly():
    def never(count: int):
        return search_max_rate(SimulatedService(100.0, base_ms=900.0, noise=0.0).measure, SearchSettings(p99_ms=500, min_rps=1))

    with pytest.raises(HarnessError, match="one replica sustained no rate"):
        check_linear_scaling(never, target_rps=10, p99_ms=500)


def test_generator_limited_searches_are_called_lower_bounds():
    settings = SearchSettings(p99_ms=500.0, start_rps=10.0)

    def measure_replicas(count: int):
        sim = SimulatedService(1000.0 * count, noise=0.0, generator_limit_rps=150.0)
        return search_max_rate(sim.measure, settings)

    check = check_linear_scaling(measure_replicas, target_rps=100, p99_ms=500, headroom=0.0, allowed_replicas=2)
    assert check.points[0].measured_rps == 80.0  # the generator's ceiling, not the service's
    assert "lower bounds" in check.note and "1, 2 replica(s)" in check.note


def test_a_per_replica_rate_that_is_a_lower_bound_makes_the_plan_an_upper_bound():
    plan = plan_capacity(target_rps=1000, p99_ms=500, per_replica_rps=548.7, headroom=0.3, converged=False,
                         upper_rps=1005.7, search_detail="timeout: search budget 40 s spent after 4 probe(s)")
    assert plan.replicas == 3 and plan.fewest_replicas == 2  # ceil(1300 / 1005.7)
    assert plan.per_replica_text() == "at least 548.7 rps (below 1005.7)"
    assert plan.describe().startswith("at most 3 replica(s)")
    assert "between 2 and 3 replicas" in plan.bound_note() and "did not converge" in plan.bound_note()
    data = plan.to_dict()
    assert data["per_replica_converged"] is False and data["bound_note"] == plan.bound_note()
    exact = plan_capacity(target_rps=1000, p99_ms=500, per_replica_rps=548.7, headroom=0.3)
    assert exact.bound_note() == "" and exact.per_replica_text() == "548.7 rps" and exact.fewest_replicas == 3
    unbounded = plan_capacity(target_rps=1000, p99_ms=500, per_replica_rps=548.7, converged=False)
    assert unbounded.fewest_replicas is None and "no rate failed" in unbounded.bound_note()


def test_a_search_that_did_not_converge_is_said_wherever_its_figure_is_used():
    from harness.sweep.table import format_capacity

    settings = SearchSettings(p99_ms=500.0, start_rps=250.0, max_probes=3)  # stops before it converges

    def measure_replicas(count: int):
        return search_max_rate(SimulatedService(600.0 * count, noise=0.0).measure, settings)

    check = check_linear_scaling(measure_replicas, target_rps=1000, p99_ms=500, headroom=0.3, allowed_replicas=2)
    assert not check.plan.per_replica_converged and check.plan.per_replica_upper_rps is not None
    assert check.note.startswith("the per-replica search did not converge")
    assert not check.points[1].converged and "2 replica(s) did not converge" in check.note
    text = format_capacity(check.to_dict())
    first, second = text.splitlines()[:2]
    assert "at least" in first and "did not converge" in first and second.startswith("plan: at most")
    assert "how far off:" in text
