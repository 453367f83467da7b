"""SLA tiers as error budgets: the budget arithmetic, met / not met / inconclusive, and the alert checks."""

from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.measure.recovery import analyze_recovery
from harness.measure.sla import INCONCLUSIVE, MET, NOT_MET, Cost, evaluate_fault, evaluate_steady, judge_tier
from harness.measure.sla_config import DEFAULT_TIERS, TIER_FOR_TOPOLOGY, SlaConfig, Thresholds, load_sla_config
from harness.request_records import ProbeSample, RequestRecord

T0 = 1_700_000_000.0


def test_defaults_are_the_design_tiers_and_thresholds():
    config = SlaConfig()
    assert [(t.name, t.availability_percent, t.max_recovery_s) for t in config.tiers] == [
        ("single-point", 99.0, 14400.0), ("active-standby", 99.5, 900.0), ("multi-active", 99.99, 30.0)]
    assert config.thresholds == Thresholds(p99_latency_ms=500.0, gpu_util_percent=90.0, gpu_sustained_s=60.0,
                                           memory_growth_mb_per_s=10.0, memory_window_s=60.0)
    assert [t.name for t in config.ranked_tiers] == ["single-point", "active-standby", "multi-active"]
    assert set(TIER_FOR_TOPOLOGY.values()) == {t.name for t in DEFAULT_TIERS}


def test_load_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "sla.yaml"
    path.write_text(
        "sla:\n"
        "  tiers:\n"
        "    - {name: bronze, availability_percent: 95, max_recovery_s: 600}\n"
        "    - {name: gold, availability_percent: 99.9, max_recovery_s: 10}\n"
        "  thresholds: {p99_latency_ms: 250, gpu_sustained_s: 30}\n"
        "  required_tier: bronze\n",
        encoding="utf-8",
    )
    config = load_sla_config(path)
    assert config.tier_names == ["bronze", "gold"] and config.required_tier == "bronze"
    assert config.thresholds.p99_latency_ms == 250 and config.thresholds.memory_growth_mb_per_s == 10.0
    overridden = load_sla_config(path, {"required_tier": "gold"})
    assert overridden.required_tier == "gold"
    assert load_sla_config().tier_names == [t.name for t in DEFAULT_TIERS]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"tiers": [{"name": "x", "availability_percent": 101, "max_recovery_s": 1}]}, "tiers.0.availability_percent"),
        ({"tiers": [{"name": "x", "availability_percent": 100, "max_recovery_s": 1}]}, "tiers.0.availability_percent"),
        ({"period_days": 0}, "period_days"),
        ({"faults_per_day": -1}, "faults_per_day"),
        ({"fault_rates_per_day": {"pod-kill": 0}}, "fault_rates_per_day"),
        ({"tiers": [{"name": "x", "availability_percent": 99, "max_recovery_s": 0}]}, "tiers.0.max_recovery_s"),
        ({"thresholds": {"p99_latency_ms": -5}}, "thresholds.p99_latency_ms"),
        ({"thresholds": {"gpu_util_percent": 150}}, "thresholds.gpu_util_percent"),
        ({"thresholds": {"p99_ms": 5}}, "thresholds.p99_ms"),
        ({"required_tier": "platinum"}, "required_tier"),
        ({"tiers": []}, "tiers"),
    ],
)
def test_invalid_config_names_the_field(data, field):
    with pytest.raises(ConfigError) as caught:
        load_sla_config(data=data)
    assert caught.value.field == field


def test_duplicate_tier_names_rejected():
    tier = {"name": "x", "availability_percent": 99, "max_recovery_s": 1}
    with pytest.raises(ConfigError, match="duplicate tier names: x"):
        load_sla_config(data={"tiers": [tier, tier]})


def test_bad_yaml_file_is_a_config_error(tmp_path):
    path = tmp_path / "sla.yaml"
    path.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_sla_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_sla_config(tmp_path / "missing.yaml")


MONTH_S = 30 * 86_400.0


def test_error_budgets_are_the_objective_over_the_period():
    config = SlaConfig()
    budgets = {t.name: t.error_budget_s(config.period_s) for t in config.tiers}
    assert budgets["single-point"] == pytest.approx(7.2 * 3600)
    assert budgets["active-standby"] == pytest.approx(3.6 * 3600)
    assert budgets["multi-active"] == pytest.approx(4.32 * 60)
    assert config.faults_per_period("pod-kill") == 30.0  # one a day over 30 days
    tuned = SlaConfig(fault_rates_per_day={"oom-kill": 0.1}, faults_per_day=2.0, period_days=7)
    assert tuned.faults_per_period("oom-kill") == pytest.approx(0.7)
    assert tuned.faults_per_period("pod-kill") == pytest.approx(14.0)
    assert tuned.faults_per_period("pod-kill", declared_per_day=0.5) == pytest.approx(3.5)  # the experiment's own
    assert tuned.faults_per_period("oom-kill", declared_per_day=0.5) == pytest.approx(0.7)  # the config wins


def _cost(cost_s: float, bad: int, total: int, window_s: float = 10.0, view: str = "outage") -> Cost:
    from harness.measure.stats import wilson_interval

    low, high = wilson_interval(bad, total)
    return Cost(view, cost_s, low * window_s, high * window_s, bad, total, window_s)


def test_burn_arithmetic_cost_over_budget_times_faults_per_period():
    tier = DEFAULT_TIERS[0]  # single-point: 7.2 h
    judged = judge_tier(tier, [_cost(2.0, 40, 200)], ttr_s=2.1, recovered=True, observed_s=10.0,
                        faults_per_period=30.0, period_s=MONTH_S)
    burn = judged.burns[0]
    assert burn["burn_per_fault"] == pytest.approx(2.0 / 25_920.0)
    assert burn["projected"] == pytest.approx(2.0 * 30 / 25_920.0)  # 0.23% of the budget
    low, high = burn["cost_low_s"], burn["cost_high_s"]
    assert low < 2.0 < high
    assert burn["projected_high"] == pytest.approx(high * 30 / 25_920.0)
    assert judged.outcome == MET and judged.projected_burn == pytest.approx(burn["projected"])


def test_a_restart_that_fits_the_single_point_budget_is_met_not_red():
    # the case the issue names: a 2.1 s single-replica restart, one a day, against 7.2 h a month
    judged = judge_tier(DEFAULT_TIERS[0], [_cost(2.1, 42, 200)], ttr_s=2.1, recovered=True, observed_s=10.0,
                        faults_per_period=30.0, period_s=MONTH_S)
    assert judged.outcome == MET


def test_a_burn_confidently_over_budget_is_not_met():
    # multi-active allows 259.2 s a month: 30 faults of 12 s (240 bad of 400 samples) burn far more
    judged = judge_tier(DEFAULT_TIERS[2], [_cost(12.0, 240, 400, window_s=20.0)], ttr_s=12.0, recovered=True,
                        observed_s=20.0, faults_per_period=30.0, period_s=MONTH_S)
    assert judged.outcome == NOT_MET
    assert any("over budget" in reason for reason in judged.reasons)


def test_too_few_samples_is_inconclusive_not_a_confident_red():
    # 2 failed of 8 requests in a 60 s window: 15 s per fault, but the interval (0.07-0.59 of the window,
    # 4-36 s) times 30 faults straddles multi-active's 259.2 s budget
    judged = judge_tier(DEFAULT_TIERS[2], [_cost(15.0, 2, 8, window_s=60.0, view="failed requests")], ttr_s=5.0,
                        recovered=True, observed_s=60.0, faults_per_period=30.0, period_s=MONTH_S)
    assert judged.outcome == INCONCLUSIVE
    assert "too few samples to tell" in judged.reasons[0]
    # the same fraction over 800 requests is precise enough to be a confident red (13-17 s x 30 > 259 s)
    many = judge_tier(DEFAULT_TIERS[2], [_cost(15.0, 200, 800, window_s=60.0, view="failed requests")], ttr_s=5.0,
                      recovered=True, observed_s=60.0, faults_per_period=30.0, period_s=MONTH_S)
    assert many.outcome == NOT_MET


def test_recovery_time_against_the_tiers_maximum():
    cost = [_cost(0.0, 0, 2000)]
    slow = judge_tier(DEFAULT_TIERS[2], cost, ttr_s=45.0, recovered=True, observed_s=60.0, faults_per_period=0.3,
                      period_s=MONTH_S)
    assert slow.outcome == NOT_MET and "recovery took 45.00 s > 30 s" in slow.reasons[0]
    unseen_long = judge_tier(DEFAULT_TIERS[2], cost, ttr_s=None, recovered=False, observed_s=60.0,
                             faults_per_period=0.3, period_s=MONTH_S)
    assert unseen_long.outcome == NOT_MET  # 60 s observed > 30 s allowed
    unseen_short = judge_tier(DEFAULT_TIERS[0], cost, ttr_s=None, recovered=False, observed_s=60.0,
                              faults_per_period=0.3, period_s=MONTH_S)
    assert unseen_short.outcome == INCONCLUSIVE  # 60 s observed says nothing about 4 h
    assert "cannot tell" in unseen_short.reasons[0]


def _recovery(bad_from: float, bad_to: float, *, requests_failed: int = 0, requests: int = 400, duration_s: float = 20.0):
    """A 50 ms prober failing in [bad_from, bad_to) s, injected at 9 s; ``requests`` spread over the window."""
    timeline = [ProbeSample(T0 + i * 0.05, not (bad_from <= i * 0.05 < bad_to), 12.0, 200 if not (bad_from <= i * 0.05 < bad_to) else 503)
                for i in range(int(duration_s / 0.05))]
    spacing = (duration_s - 9.0) / requests
    records = [RequestRecord(T0 + 9.0 + i * spacing, T0 + 9.0 + i * spacing, 12.0,
                             503 if i < requests_failed else 200, i >= requests_failed) for i in range(requests)]
    return analyze_recovery(timeline, injected_at_s=T0 + 9.0, slo_latency_ms=500.0, stability_window_s=1.0,
                            requests=records)


def test_evaluate_fault_judges_every_tier_from_a_constructed_timeline():
    result = _recovery(10.0, 25.0, requests_failed=80, duration_s=30.0)
    verdict = evaluate_fault(result, fault="pod-kill", config=SlaConfig(required_tier="multi-active"), telemetry=[])
    # 15 s of outage a day: fits single-point (7.2 h) and active-standby (3.6 h), over multi-active (4.32 min:
    # 30 x 14-16 s); recovery in 15 s is within every tier's maximum
    assert verdict.judgement("single-point").outcome == MET
    assert verdict.judgement("active-standby").outcome == MET
    assert verdict.outcome() == NOT_MET and verdict.highest_tier_met == "active-standby"
    assert "over budget" in verdict.reasons()[0]
    assert verdict.measured["ttr_s"] == pytest.approx(15.012, abs=1e-6)
    assert verdict.measured["p99_ms"] == 12.0
    views = {cost.view: cost for cost in verdict.costs}
    assert views["outage"].cost_s == pytest.approx(15.0, abs=1e-6)
    assert views["failed requests"].cost_s == pytest.approx(80 / 400 * 21.0)
    data = verdict.to_dict()
    assert data["outcome"] == NOT_MET and data["tiers"]["multi-active"]["projected_burn"] > 1
    json.dumps(data, allow_nan=False)


LEAK = [{"time_s": T0 + 9.0 + i * 0.5, "replica": "reference-0", "pid": 7, "rss_mb": 300.0 + 25.0 * i} for i in range(20)]
FLAT = [{"time_s": T0 + 9.0 + i * 0.5, "replica": "reference-0", "pid": 7, "rss_mb": 300.0} for i in range(20)]


def test_an_expected_alert_that_fired_is_a_passed_detection_with_its_lead_time():
    result = _recovery(14.0, 15.0)
    verdict = evaluate_fault(result, fault="oom-kill", expected_alerts=["memory-growth"], telemetry=LEAK,
                             killed_at_s=T0 + 14.0, kill_label="OOM kill", config=SlaConfig(required_tier="single-point"))
    [check] = verdict.alert_checks
    assert check.status == "detected" and check.passed
    assert check.fired_at_s == pytest.approx(T0 + 10.0)  # the third sample: the first slope over 3 samples
    assert check.lead_s == pytest.approx(4.0)
    assert "fired 4.0 s before the OOM kill" in check.message
    assert verdict.outcome() == MET and verdict.alert_failures == []


def test_an_expected_alert_that_stayed_silent_fails_the_cell():
    verdict = evaluate_fault(_recovery(14.0, 15.0), expected_alerts=["memory-growth"], telemetry=FLAT,
                             config=SlaConfig(required_tier="single-point"))
    assert verdict.judgement().outcome == MET  # the tier itself holds...
    assert verdict.outcome() == NOT_MET  # ...but monitoring would have missed the fault
    assert verdict.reasons() == ["expected alert memory-growth did not fire: monitoring would miss this fault"]


def test_an_unexpected_alert_is_a_violation():
    verdict = evaluate_fault(_recovery(14.0, 15.0), telemetry=LEAK, config=SlaConfig(required_tier="single-point"))
    [check] = verdict.alert_checks
    assert check.status == "unexpected" and check.name == "memory-growth"
    assert verdict.outcome() == NOT_MET and verdict.reasons()[0].startswith("unexpected alert: memory growth")
    slow = evaluate_fault(_recovery(14.0, 15.0), p99_ms=750.0, telemetry=FLAT, config=SlaConfig(required_tier="single-point"))
    assert [c.name for c in slow.alert_checks] == ["p99-latency"] and slow.outcome() == NOT_MET


def test_without_telemetry_an_expected_memory_alert_is_unobserved_not_missed():
    verdict = evaluate_fault(_recovery(14.0, 15.0), expected_alerts=["memory-growth"], telemetry=None,
                             config=SlaConfig(required_tier="single-point"))
    [check] = verdict.alert_checks
    assert check.status == "unobserved" and not check.failed and verdict.outcome() == MET


def test_unknown_expected_alert_is_a_config_error():
    with pytest.raises(ConfigError, match="expect_alerts='pager'"):
        evaluate_fault(_recovery(14.0, 15.0), expected_alerts=["pager"], telemetry=[])


def test_absent_gpu_telemetry_raises_no_alert():
    rows = [{"time_s": T0 + 9 + i, "replica": "replica-0", "pid": 7, "rss_mb": 300.0, "cpu_percent": 50.0,
             "gpu_util_percent": None} for i in range(12)]
    verdict = evaluate_fault(_recovery(14.0, 15.0), telemetry=rows, config=SlaConfig(required_tier="multi-active"))
    assert verdict.alert_checks == []


def test_steady_state_judges_the_failed_fraction_with_its_interval():
    config = SlaConfig(required_tier="single-point")
    assert evaluate_steady(failed=0, total=2000, config=config).outcome() == MET  # at most 0.19% < 1%
    assert evaluate_steady(failed=50, total=1000, config=config).outcome() == NOT_MET  # 5%, at least 3.8%
    assert evaluate_steady(failed=1, total=100, config=config).outcome() == INCONCLUSIVE
    strict = evaluate_steady(failed=0, total=2000, config=SlaConfig(required_tier="multi-active"))
    assert strict.outcome() == INCONCLUSIVE  # 2,000 requests cannot show 99.99%
    assert "too few requests to tell" in strict.reasons()[0]
    with pytest.raises(ConfigError, match="failed"):
        evaluate_steady(failed=5, total=2)


def test_judgement_requires_a_known_tier():
    verdict = evaluate_fault(_recovery(14.0, 15.0), telemetry=[])
    with pytest.raises(ConfigError, match="no SLA tier"):
        verdict.outcome()
    with pytest.raises(ConfigError, match="unknown tier"):
        verdict.outcome("platinum")
    assert verdict.outcome("single-point") == MET
    with pytest.raises(ConfigError, match="tier"):
        SlaConfig().tier("nope")
