"""The max-sustainable-rate search against a simulated service whose knee is known in closed form."""

from __future__ import annotations

import dataclasses

import math

import pytest

from harness.errors import ConfigError
from harness.sweep.search import (
    CLEAR_FAIL,
    FAIL,
    GENERATOR_LIMITED,
    PASS,
    PointMeasurement,
    SearchSettings,
    classify,
    is_clear_violation,
    search_max_rate,
)
from harness.sweep.simulated import SimulatedService

SLO_MS = 500.0


def test_simulated_knee_is_where_p99_meets_the_slo():
    sim = SimulatedService(capacity_rps=100.0, base_ms=20.0, noise=0.0)
    knee = sim.knee_rps(SLO_MS)
    assert 0.9 * 100 < knee < 100  # C x (1 - eps) with eps = 1 / (1 + x)
    assert sim.p99_ms_at(knee) == pytest.approx(SLO_MS)
    assert sim.p99_ms_at(knee * 0.99) < SLO_MS < sim.p99_ms_at(knee * 1.01)


@pytest.mark.parametrize("capacity_rps", [7.0, 37.0, 100.0, 450.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_finds_the_knee_within_tolerance_in_few_probes(capacity_rps, seed):
    sim = SimulatedService(capacity_rps=capacity_rps, base_ms=20.0, noise=0.03, seed=seed)
    settings = SearchSettings(p99_ms=SLO_MS, start_rps=10.0, rel_tol=0.05)
    result = search_max_rate(sim.measure, settings)
    knee = sim.knee_rps(SLO_MS)
    assert result.converged, result.detail
    # within the search tolerance plus the simulated 3 % noise, and never above capacity
    assert result.max_rate_rps == pytest.approx(knee, rel=0.05 + 0.03)
    assert result.max_rate_rps < capacity_rps
    assert len(result.probes) <= 11  # one more than a bound from the overload would take: it is probed, not assumed
    assert len(sim.calls) == len(result.probes)
    # the answer is a rate that was measured to pass, not an interpolation
    assert any(p.rate_rps == result.max_rate_rps and p.verdict == PASS for p in result.probes)
    assert result.upper_rps is not None and (result.upper_rps - result.lower_rps) / result.upper_rps <= 0.05


def test_search_is_deterministic_for_a_seed():
    runs = [search_max_rate(SimulatedService(100.0, seed=5).measure, SearchSettings(p99_ms=SLO_MS)) for _ in range(2)]
    assert [p.rate_rps for p in runs[0].probes] == [p.rate_rps for p in runs[1].probes]
    assert runs[0].max_rate_rps == runs[1].max_rate_rps


def test_overload_throughput_bounds_the_search_at_once():
    sim = SimulatedService(capacity_rps=50.0, noise=0.0)
    result = search_max_rate(sim.measure, SearchSettings(p99_ms=SLO_MS, start_rps=400.0))
    # the first probe is far over capacity: its completions (50 rps) cap the next probe below 400 / 2
    assert result.probes[0].verdict == CLEAR_FAIL
    assert result.probes[1].rate_rps < 50.0 * 1.1
    assert result.max_rate_rps == pytest.approx(sim.knee_rps(SLO_MS), rel=0.05)


def test_start_rate_above_the_knee_searches_downwards():
    sim = SimulatedService(capacity_rps=3.0, noise=0.0)
    result = search_max_rate(sim.measure, SearchSettings(p99_ms=SLO_MS, start_rps=10.0))
    assert result.converged
    assert result.max_rate_rps == pytest.approx(sim.knee_rps(SLO_MS), rel=0.05)


def test_no_sustainable_rate_reports_zero_with_the_reason():
    sim = SimulatedService(capacity_rps=100.0, base_ms=600.0, noise=0.0)  # idle latency already misses the SLO
    result = search_max_rate(sim.measure, SearchSettings(p99_ms=SLO_MS, start_rps=8.0, min_rps=1.0))
    assert result.max_rate_rps == 0.0
    assert result.stop_reason == "none-sustainable"
    assert "min_rps=1" in result.detail
    assert result.probes[-1].rate_rps == 1.0


def test_generator_lag_stops_the_search_and_says_so():
    sim = SimulatedService(capacity_rps=1000.0, noise=0.0, generator_limit_rps=150.0)
    result = search_max_rate(sim.measure, SearchSettings(p99_ms=SLO_MS, start_rps=10.0))
    assert result.stop_reason == "generator-limited"
    assert result.probes[-1].verdict == GENERATOR_LIMITED
    assert result.max_rate_rps == 80.0  # the last rate the generator could send: a lower bound
    assert "generator" in result.detail


def test_capped_at_max_rate():
    sim = SimulatedService(capacity_rps=10_000.0, noise=0.0)
    result = search_max_rate(sim.measure, SearchSettings(p99_ms=SLO_MS, start_rps=10.0, max_rps=100.0))
    assert result.stop_reason == "capped"
    assert result.max_rate_rps == 100.0 and not result.converged


def test_max_probes_bounds_the_search():
    sim = SimulatedService(capacity_rps=20_000.0, noise=0.0)
    result = search_max_rate(sim.measure, SearchSettings(p99_ms=SLO_MS, start_rps=1.0, max_probes=4))
    assert len(result.probes) == 4 and result.stop_reason == "max-probes"
    assert result.max_rate_rps == 8.0


def test_classify_names_each_violation():
    s = SearchSettings(p99_ms=100.0, max_error_rate=0.01)
    ok = PointMeasurement(rate_rps=10, throughput_rps=10, p99_ms=50)
    assert classify(ok, s)[0] == PASS
    slow = PointMeasurement(rate_rps=10, throughput_rps=10, p99_ms=150)
    verdict, why = classify(slow, s)
    assert verdict == FAIL and "p99 150.0 ms > SLO 100 ms" in why
    errors = PointMeasurement(rate_rps=10, throughput_rps=9.7, p99_ms=50, error_rate=0.03)
    assert classify(errors, s) == (FAIL, "error rate 3.00% > 1.00%")
    far = PointMeasurement(rate_rps=10, throughput_rps=10, p99_ms=450)
    assert classify(far, s)[0] == CLEAR_FAIL and is_clear_violation(far, s)
    lag = PointMeasurement(rate_rps=100, throughput_rps=60, p99_ms=10, generator_saturated=True)
    assert classify(lag, s)[0] == GENERATOR_LIMITED
    # Poisson arrivals produced fewer requests than the nominal rate: keeping up is judged against them
    unlucky = PointMeasurement(rate_rps=20, throughput_rps=17.0, p99_ms=10, sent_rate_rps=17.2)
    assert classify(unlucky, s)[0] == PASS
    behind = PointMeasurement(rate_rps=20, throughput_rps=15.0, p99_ms=10, sent_rate_rps=20.5)
    assert classify(behind, s)[0] == FAIL
    nan_p99 = PointMeasurement(rate_rps=10, throughput_rps=0, p99_ms=math.nan, error_rate=1.0)
    assert classify(nan_p99, s)[0] == CLEAR_FAIL


@pytest.mark.parametrize(
    ("field", "value"),
    [("p99_ms", 0.0), ("start_rps", -1.0), ("growth", 1.0), ("rel_tol", 1.5), ("max_probes", 0), ("max_error_rate", 2.0)],
)
def test_invalid_settings_name_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        search_max_rate(lambda r: PointMeasurement(r, r, 1.0), SearchSettings(**{field: value}))
    assert info.value.field == field and info.value.value == value


def test_an_overload_before_any_pass_tries_just_below_the_capacity_it_measured():
    sim = SimulatedService(capacity_rps=140.0, noise=0.0)
    result = search_max_rate(sim.measure, SearchSettings(p99_ms=SLO_MS, start_rps=165.0))
    assert result.probes[0].verdict == CLEAR_FAIL  # 165 rps offered, 140 completed
    assert result.probes[1].rate_rps == pytest.approx(140.0 * 0.9)  # not 165 / 2: the knee is near capacity
    assert result.converged and len(result.probes) <= 5


def test_a_spent_budget_stops_the_search_with_its_bracket():
    sim = SimulatedService(capacity_rps=600.0, noise=0.0)
    left = iter([None, None, None, "search budget 40 s spent"])
    result = search_max_rate(sim.measure, SearchSettings(p99_ms=SLO_MS, start_rps=250.0), keep_going=lambda rate: next(left))
    assert result.stop_reason == "timeout" and not result.converged and len(result.probes) == 3
    # 1000 rps overloaded: its completions (600 rps) are where to look next, not a bound
    assert result.lower_rps == 500.0 and result.upper_rps == 1000.0
    assert result.max_rate_rps == 500.0
    assert "search budget 40 s spent after 3 probe(s)" in result.detail and "[500.00, 1000.00)" in result.detail


def test_a_probe_cut_short_by_the_budget_is_no_failure():
    sim = SimulatedService(capacity_rps=600.0, noise=0.0)
    calls = []

    def measure(rate):
        calls.append(rate)
        if len(calls) == 4:  # the budget ends this probe after one window: no verdict on its rate
            return PointMeasurement(rate, rate, 80.0, status="incomplete", reason="point budget reached after 1 window(s)")
        return sim.measure(rate)

    result = search_max_rate(measure, SearchSettings(p99_ms=SLO_MS, start_rps=250.0))
    assert result.probes[-1].verdict == "incomplete" and result.stop_reason == "timeout"
    assert result.lower_rps == 500.0 and result.upper_rps == 1000.0  # the bracket before the cut
    assert not result.converged and "probe cut short by the budget" in result.detail


def test_a_thrashing_overload_does_not_end_the_search_below_the_knee():
    # far over capacity this service completes only 80% of what it can (shedding costs it CPU): a bound
    # taken from that throughput would converge at ~0.88 x capacity, below the knee
    sim = SimulatedService(capacity_rps=500.0, noise=0.0)

    def measure(rate):
        m = sim.measure(rate)
        if rate > 1.5 * sim.capacity_rps:
            return dataclasses.replace(m, throughput_rps=0.8 * sim.capacity_rps)
        return m

    result = search_max_rate(measure, SearchSettings(p99_ms=SLO_MS, start_rps=220.0))
    knee = sim.knee_rps(SLO_MS)
    assert knee > 0.8 * 500.0 * 1.1  # the knee lies above the thrashing hint
    assert result.converged and result.max_rate_rps == pytest.approx(knee, rel=0.06)
    assert all(p.verdict != "pass" or p.rate_rps <= knee for p in result.probes)
    assert result.upper_rps in [p.rate_rps for p in result.probes]  # a measured failure, not a hint


def test_keeping_up_is_judged_by_backlog_growth_where_it_was_measured():
    from harness.sweep.search import classify, kept_up_rps

    s = SearchSettings(p99_ms=SLO_MS)
    # few answers counted in the window (requests in flight filling up) but no backlog growth: kept up
    filling = PointMeasurement(rate_rps=440.0, throughput_rps=410.0, p99_ms=380.0, sent_rate_rps=445.0, backlog_growth=-0.01)
    assert kept_up_rps(filling) == 445.0 and classify(filling, s)[0] == PASS
    # the backlog grows 10% a second: the service completes 445 / 1.1 = 404.5 rps, under 95% of 445
    behind = PointMeasurement(rate_rps=440.0, throughput_rps=440.0, p99_ms=300.0, sent_rate_rps=445.0, backlog_growth=0.1)
    verdict, why = classify(behind, s)
    assert verdict == FAIL and "did not keep up" in why and kept_up_rps(behind) == pytest.approx(445.0 / 1.1)
    # without a backlog figure, the throughput decides as before
    legacy = PointMeasurement(rate_rps=440.0, throughput_rps=400.0, p99_ms=300.0, sent_rate_rps=445.0)
    assert classify(legacy, s)[0] == FAIL and "throughput 400.0" in classify(legacy, s)[1]


def test_an_overload_near_the_highest_pass_steps_up_once_and_converges():
    # 95 rps passes, 190 is overloaded and completes ~100: the knee (95.4) lies within rel_tol of the pass,
    # so the next probe is where the overload completed (at least one rel_tol step above the pass, where a
    # failure ends the search), not the bisection's 142.5
    sim = SimulatedService(capacity_rps=100.0, noise=0.04, seed=1)
    s = SearchSettings(p99_ms=SLO_MS, start_rps=47.5, rel_tol=0.05)
    result = search_max_rate(sim.measure, s)
    rates = [round(p.rate_rps, 2) for p in result.probes]
    assert rates[:3] == [47.5, 95.0, 190.0] and result.probes[2].verdict == CLEAR_FAIL
    assert rates[3] == pytest.approx(max(result.probes[2].measurement.throughput_rps, 95.0 * 1.05))
    assert result.converged and len(result.probes) == 4 and result.max_rate_rps == 95.0


def test_requests_shed_under_overload_make_the_successes_a_hint():
    # the service sheds what it cannot queue: no backlog grows, but only 448 of 816 rps succeed
    shed = PointMeasurement(rate_rps=816.0, throughput_rps=448.0, p99_ms=640.0, error_rate=0.45,
                            sent_rate_rps=816.0, backlog_growth=0.0)
    passed = PointMeasurement(rate_rps=408.0, throughput_rps=410.0, p99_ms=150.0, sent_rate_rps=408.0, backlog_growth=0.0)
    answers = {204.0: dataclasses.replace(passed, rate_rps=204.0, throughput_rps=204.0, sent_rate_rps=204.0),
               408.0: passed, 816.0: shed}
    calls = []

    def measure(rate):
        calls.append(rate)
        if rate in answers:
            return answers[rate]
        return dataclasses.replace(passed, rate_rps=rate, throughput_rps=rate, sent_rate_rps=rate)

    search_max_rate(measure, SearchSettings(p99_ms=SLO_MS, start_rps=204.0, max_probes=4))
    assert calls == [204.0, 408.0, 816.0, 448.0]  # the successes under overload, not the midpoint 612


def test_a_service_refusing_requests_fails_the_probe_even_when_the_generator_also_lagged():
    s = SearchSettings(p99_ms=SLO_MS)
    # 39% answered 503 at 1496 rps while the generator's send lag crept over its tolerance: the service's failure,
    # an upper bound with its successful throughput as the next hint, not "the generator limited the search"
    shed = PointMeasurement(rate_rps=1496.0, throughput_rps=928.0, p99_ms=299.0, error_rate=0.386, sent_rate_rps=1522.0,
                            generator_saturated=True, generator_detail="p99 send lag 53 ms > 50 ms")
    verdict, why = classify(shed, s)
    assert verdict == CLEAR_FAIL and "error rate 38.60%" in why and "generator also lagged" in why
    # no errors: the lag is all there is to see, and the search stops there saying so
    lagging = dataclasses.replace(shed, error_rate=0.0, throughput_rps=1500.0)
    assert classify(lagging, s)[0] == GENERATOR_LIMITED
    answers = {374.0: PointMeasurement(374.0, 374.0, 80.0, sent_rate_rps=374.0),
               748.0: PointMeasurement(748.0, 748.0, 110.0, sent_rate_rps=748.0), 1496.0: shed}
    calls = []

    def measure(rate):
        calls.append(rate)
        return answers.get(rate) or PointMeasurement(rate, rate, 150.0, sent_rate_rps=rate)

    result = search_max_rate(measure, SearchSettings(p99_ms=SLO_MS, start_rps=374.0, max_probes=4))
    assert calls[:4] == [374.0, 748.0, 1496.0, 928.0] and result.stop_reason != "generator-limited"
