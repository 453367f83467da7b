"""`harness.measure.load_verdict.judge_load`: the one verdict on a load, against the SLO and a named tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.measure.load_verdict import INCONCLUSIVE, MET, NO_REQUESTS, NOT_MET, judge_load, judge_saved_load
from harness.slo import Slo


def _figures(requests: int = 5000, errors: int = 0, p99_ms: float | None = 40.0, **more) -> dict:
    return {"requests": requests, "ok": requests - errors, "errors": errors, "p99_ms": p99_ms, **more}


def test_a_load_within_the_slo_is_met_and_keeps_its_margin():
    verdict = judge_load(_figures(errors=10))
    assert verdict.outcome == MET and verdict.met and not verdict.failed
    assert verdict.reasons == ["p99 40.0 ms <= SLO 500 ms", "10 of 5000 requests failed (0.20%) <= SLO 1.00%"]
    assert verdict.line() == ("SLO (p99 <= 500 ms, errors <= 1%) met: p99 40.0 ms <= SLO 500 ms; "
                              "10 of 5000 requests failed (0.20%) <= SLO 1.00%")


def test_each_bound_the_load_crosses_is_a_reason():
    verdict = judge_load(_figures(errors=60, p99_ms=612.5))
    assert verdict.outcome == NOT_MET and verdict.failed
    assert verdict.reasons == ["p99 612.5 ms > SLO 500 ms", "60 of 5000 requests failed (1.20%) > SLO 1.00%"]
    # the bound is inclusive, and the SLO given is the one judged by
    assert judge_load(_figures(errors=50, p99_ms=500.0)).outcome == MET
    assert judge_load(_figures(p99_ms=300.0), Slo(p99_ms=250.0)).reasons == ["p99 300.0 ms > SLO 250 ms"]


def test_no_request_and_every_request_failed_are_not_met():
    assert judge_load({"requests": 0}).reasons == [NO_REQUESTS]
    assert judge_load({}).outcome == NOT_MET
    verdict = judge_load(_figures(requests=100, errors=100, p99_ms=None))
    assert verdict.outcome == NOT_MET and verdict.reasons == ["100 of 100 requests failed (100.00%) > SLO 1.00%"]


def test_failed_requests_come_from_errors_else_from_ok():
    assert judge_load({"requests": 1000, "ok": 950, "p99_ms": 10.0}).reasons == ["50 of 1000 requests failed (5.00%) > SLO 1.00%"]
    assert judge_load({"requests": 1000, "errors": 50, "ok": 1000, "p99_ms": 10.0}).failed


def test_a_named_tier_is_judged_beside_the_slo():
    # the SLO is met (0.5% < 1%) but multi-active allows 0.01%: its tier is not met
    verdict = judge_load(_figures(errors=25), tier="multi-active")
    assert verdict.outcome == NOT_MET and verdict.tier == "multi-active"
    assert verdict.reasons[0].startswith("multi-active: 25 of 5000 requests failed (0.500%")
    assert verdict.criteria == "SLO (p99 <= 500 ms, errors <= 1%) and SLA tier multi-active"
    # 1,000 clean requests cannot show 99.99%: inconclusive, with the reason
    unsure = judge_load(_figures(requests=1000), tier="multi-active")
    assert unsure.outcome == INCONCLUSIVE and "too few requests to tell" in unsure.reasons[0]
    # a met tier adds its figures to the margin
    met = judge_load(_figures(), tier="single-point")
    assert met.outcome == MET and met.reasons[2].startswith("single-point: 0 of 5000 requests failed")
    # the SLO's failure is not hidden by an inconclusive tier
    assert judge_load(_figures(requests=1000, p99_ms=900.0), tier="multi-active").reasons == ["p99 900.0 ms > SLO 500 ms"]


def test_a_tier_with_telemetry_fails_on_an_alert_and_the_p99_is_judged_once():
    growing = [{"time_s": float(t), "replica": "r0", "rss_mb": 100.0 + 20.0 * t} for t in range(0, 90)]
    verdict = judge_load(_figures(p99_ms=900.0), tier="single-point", telemetry=growing)
    assert verdict.outcome == NOT_MET
    assert verdict.reasons[0] == "p99 900.0 ms > SLO 500 ms"
    assert any("memory growth" in reason for reason in verdict.reasons)
    assert not any("p99 latency" in reason for reason in verdict.reasons)  # the alert's threshold is the SLO's


def test_an_unknown_tier_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="tier='gold'"):
        judge_load(_figures(), tier="gold")


def test_saturation_is_noted_beside_the_verdict():
    verdict = judge_load(_figures(generator_saturated=True))
    assert verdict.met and verdict.notes and "saturated" in verdict.line()
    assert verdict.to_dict()["outcome"] == MET and verdict.to_dict()["slo"] == {"p99_ms": 500.0, "max_error_rate": 0.01}


def test_a_saved_load_reads_its_telemetry_only_for_a_tier(tmp_path: Path):
    (tmp_path / "telemetry.csv").write_text("not,a,telemetry,file\n", encoding="utf-8")
    assert judge_saved_load(tmp_path, _figures()).met  # no tier: the telemetry is not read
    assert judge_saved_load(tmp_path / "missing", _figures(), tier="single-point").met  # none sampled
