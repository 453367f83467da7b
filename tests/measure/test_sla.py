"""SLA tiers as validated config, the verdict listing every violation, and the pass/fail rule."""

from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.measure.recovery import analyze_recovery
from harness.measure.sla import (
    DEFAULT_TIERS,
    TIER_FOR_TOPOLOGY,
    SlaConfig,
    Thresholds,
    check_availability,
    check_recovery,
    evaluate,
    evaluate_recovery,
    load_sla_config,
    meets,
)
from harness.records import ProbeSample

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


def test_highest_tier_met():
    verdict = evaluate(availability=0.99995, ttr_s=10.0, recovered=True)
    assert verdict.tier == "multi-active" and verdict.tiers_met == ["single-point", "active-standby", "multi-active"]
    assert verdict.violations == [] and verdict.alerts == []
    middle = evaluate(availability=0.996, ttr_s=60.0, recovered=True)
    assert middle.tier == "active-standby"
    assert middle.tier_findings["multi-active"] == [
        "availability 99.600% < 99.99% required by multi-active",
        "recovery took 60.00 s > 30 s allowed by multi-active",
    ]
    assert len(middle.violations) == 2 and all(v.startswith("multi-active: ") for v in middle.violations)


def test_no_tier_met_lists_every_tier_shortfall():
    verdict = evaluate(availability=0.98, ttr_s=2000.0, recovered=True)
    assert verdict.tier is None and verdict.tiers_met == []
    assert len(verdict.tier_findings["single-point"]) == 1  # 2000 s is within 4 h
    assert len(verdict.tier_findings["active-standby"]) == 2
    assert len(verdict.violations) == 5


def test_not_recovered_fails_every_tier():
    verdict = evaluate(availability=0.999999, ttr_s=None, recovered=False, observed_s=45.0)
    assert verdict.tier is None
    for findings in verdict.tier_findings.values():
        assert findings and "not recovered within the observed 45.0 s" in findings[0]


def test_without_a_fault_only_availability_is_judged():
    verdict = evaluate(availability=0.9996)
    assert verdict.tier == "active-standby"
    assert check_recovery(None, None, DEFAULT_TIERS[0]) == []


def test_every_violation_is_listed_for_the_required_tier():
    leak = [{"time_s": T0 + i, "replica": "replica-0", "pid": 7, "rss_mb": 300.0 + 25.0 * i,
             "gpu_index": 0, "gpu_util_percent": 97.0} for i in range(90)]
    config = SlaConfig(required_tier="multi-active")
    verdict = evaluate(availability=0.99, ttr_s=45.0, recovered=True, p99_ms=750.0, telemetry=leak, config=config)
    problems = verdict.violations_for("multi-active")
    assert len(problems) == 5
    text = "\n".join(problems)
    for needle in ("availability 99.000%", "recovery took 45.00 s", "p99 latency 750.0 ms", "GPU utilisation", "memory growth"):
        assert needle in text
    assert len(verdict.alerts) == 3
    assert verdict.tier == "single-point"
    assert not meets(verdict)  # the required tier
    assert not meets(verdict, "single-point")  # alerts fail it...
    assert meets(verdict, "single-point", include_alerts=False)  # ...unless only the tier is asked
    data = verdict.to_dict()
    assert data["passed"] is False and data["required_tier"] == "multi-active"
    json.dumps(data, allow_nan=False)


def test_absent_gpu_telemetry_raises_no_alert():
    rows = [{"time_s": T0 + i, "replica": "replica-0", "pid": 7, "rss_mb": 300.0, "cpu_percent": 50.0,
             "gpu_util_percent": None} for i in range(120)]
    verdict = evaluate(availability=1.0, ttr_s=0.0, recovered=True, p99_ms=20.0, telemetry=rows,
                       config=SlaConfig(required_tier="multi-active"))
    assert verdict.alerts == [] and meets(verdict)


def test_meets_requires_a_known_tier():
    verdict = evaluate(availability=1.0)
    with pytest.raises(ConfigError, match="no SLA tier"):
        meets(verdict)
    with pytest.raises(ConfigError, match="unknown tier"):
        meets(verdict, "platinum")
    assert meets(verdict, "multi-active")


def test_bad_measurements_are_config_errors():
    with pytest.raises(ConfigError, match="availability"):
        evaluate(availability=99.5)  # a percentage where a fraction belongs
    with pytest.raises(ConfigError, match="availability"):
        evaluate(availability="high")
    with pytest.raises(ConfigError, match="ttr_s"):
        evaluate(availability=1.0, ttr_s=-1.0, recovered=True)
    with pytest.raises(ConfigError, match="tier"):
        SlaConfig().tier("nope")


def test_availability_boundary_is_inclusive():
    assert check_availability(0.995, DEFAULT_TIERS[1]) == []
    assert check_availability(0.9949, DEFAULT_TIERS[1])
    assert check_recovery(900.0, True, DEFAULT_TIERS[1]) == []


def test_evaluate_recovery_from_a_constructed_timeline():
    # 50 ms prober, 20 s; failures for 2 s from t=10; p99 of steady state 12 ms.
    timeline = [ProbeSample(T0 + i * 0.05, not (200 <= i < 240), 12.0 if not (200 <= i < 240) else 1.0,
                            200 if not (200 <= i < 240) else 503) for i in range(400)]
    result = analyze_recovery(timeline, injected_at_s=T0 + 9.0, slo_latency_ms=500.0, stability_window_s=1.0)
    verdict = evaluate_recovery(result, config=SlaConfig(required_tier="active-standby"))
    # availability 40 bad of 220 samples in [9, 20): 81.8%: no tier; recovery 2 s meets every tier's time.
    assert verdict.tier is None
    assert verdict.measured["ttr_s"] == pytest.approx(2.0, abs=1e-6)
    assert verdict.measured["p99_ms"] == 12.0
    assert all("recovery" not in v for v in verdict.violations)
    assert not meets(verdict)
