"""The scenario classes without pytest's plugin: options, the session's run directory, cases, expectations."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError, UsageError
from harness.jsonfile import write_json
from harness.results import load_run
from harness.scenarios.chaos import NEVER_READY_MISS, resilience_cases
from harness.scenarios.perf import CapacityResult, LoadOutcome, SweepResult
from harness.scenarios.session import Inconclusive, NotApplicable, ScenarioFailed, ScenarioSession, expect_none, validate_options


def _session(tmp_path: Path, **options) -> ScenarioSession:
    return ScenarioSession(validate_options(reports_root=tmp_path / "reports", **options), inspect_torch=False)


def test_a_failed_expectation_lists_every_finding() -> None:
    expect_none([], "nothing wrong")
    with pytest.raises(ScenarioFailed) as caught:
        expect_none(["a", "b", "c"], "three things")
    assert str(caught.value) == "three things (3):\n  - a\n  - b\n  - c"
    assert caught.value.findings == ["a", "b", "c"] and isinstance(caught.value, AssertionError)


def test_options_are_validated_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--harness-tier='gold': unknown tier"):
        validate_options(tier="gold")
    with pytest.raises(ConfigError, match=r"--harness-preset='weekly'"):
        validate_options(preset="weekly")
    with pytest.raises(UsageError, match=r"--harness-baseline=.*: not a directory"):
        validate_options(baseline=tmp_path / "missing")
    (tmp_path / "old" / "run.json").parent.mkdir()
    (tmp_path / "old" / "run.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UsageError, match="already holds a run"):
        validate_options(report_dir=tmp_path / "old")
    assert validate_options(tier="multi-active", report_dir=tmp_path / "new").tier == "multi-active"


def test_a_session_owns_one_run_directory_and_its_parts(tmp_path: Path) -> None:
    session = _session(tmp_path, preset="nightly")
    assert session.run_dir.parent == (tmp_path / "reports").resolve()
    assert session.run_dir.name == session.record.run_id and load_run(session.run_dir).kind == "run"
    first, second = session.part_dir("load"), session.part_dir("load")
    assert (first.name, second.name) == ("load", "load-2")
    assert session.part_dir("chaos/pod-kill/single", unique=False) == session.part_dir("chaos/pod-kill/single", unique=False)
    assert sorted(load_run(session.run_dir).parts) == ["chaos/pod-kill/single", "load", "load-2"]


def test_finish_records_the_outcomes_and_writes_the_report(tmp_path: Path) -> None:
    session = _session(tmp_path)
    ran = []
    session.before_report(lambda s: ran.append(s.run_dir))
    session.note_test("a::x", "passed", 1.0)
    session.note_test("a::y", "xfailed", 2.0, "expected")
    with pytest.raises(ConfigError):
        session.note_test("a::z", "exploded", 0.0)
    paths = session.finish()
    assert ran == [session.run_dir] and paths["html"].is_file() and paths["summary"].is_file()
    record = load_run(session.run_dir)
    assert record.status == "completed" and record.summary["tests"]["passed"] == 1
    assert record.summary["tests"]["xfailed"] == 1 and record.artifacts["report_html"] == "report.html"


def test_replaying_copies_the_saved_part_or_is_not_applicable(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    write_json(saved / "sweep" / "sweep_summary.json", {"points": []})
    session = _session(tmp_path, replay=saved)
    assert (session.part_dir("sweep", unique=False) / "sweep_summary.json").is_file()
    with pytest.raises(NotApplicable, match="has no part 'capacity'"):
        session.part_dir("capacity", unique=False)


def test_comparing_without_a_baseline_is_not_applicable(tmp_path: Path) -> None:
    session = _session(tmp_path)
    with pytest.raises(NotApplicable, match="no baseline"):
        session.compare_part(session.part_dir("sweep"))


def test_the_resilience_cases_of_each_profile() -> None:
    from harness.config import TOPOLOGIES
    from harness.job.presets import SMOKE_FAULTS, SMOKE_TOPOLOGIES

    smoke = resilience_cases("smoke")
    assert [(c.experiment, c.topology) for c in smoke] == [(f, t) for f in SMOKE_FAULTS for t in SMOKE_TOPOLOGIES]
    assert all(c.expected_miss is None for c in smoke)  # a single replica's restart fits its error budget
    nightly = {c.id: c for c in resilience_cases("nightly")}
    assert {c.topology for c in nightly.values()} == set(TOPOLOGIES) and "hang-multi-active" in nightly
    assert nightly["slow-startup-multi-active"].expected_miss.startswith(NEVER_READY_MISS.split("{")[0])
    assert nightly["slow-startup-fixed-multi-active"].expected_miss is None
    assert "autoscale-step-multi-active" in nightly and "autoscale-step-single" not in nightly  # a drill's topologies
    with pytest.raises(ConfigError, match="preset='weekly'"):
        resilience_cases("weekly")


def test_a_load_outcome_lists_every_violation_of_its_tier(tmp_path: Path) -> None:
    outcome = LoadOutcome({"requests": 1000, "ok": 950, "p99_ms": 900.0, "topology": "multi-active"}, tmp_path, "multi-active")
    with pytest.raises(ScenarioFailed) as caught:
        outcome.expect_tier()
    # the SLO (p99, errors: harness.slo) and the tier, by the one judgement of a load (judge_load)
    assert len(caught.value.findings) == 3
    assert caught.value.findings[:2] == ["p99 900.0 ms > SLO 500 ms", "50 of 1000 requests failed (5.00%) > SLO 1.00%"]
    assert caught.value.findings[2].startswith("multi-active: 50 of 1000 requests failed (5.000%")
    assert "SLO (p99 <= 500 ms, errors <= 1%) and SLA tier multi-active not met" in str(caught.value)
    LoadOutcome({"requests": 5000, "ok": 5000, "p99_ms": 40.0}, tmp_path, "single-point").expect_tier()
    # 1,000 clean requests cannot show 99.99%: inconclusive, which skips the scenario with the reason
    with pytest.raises(Inconclusive, match="too few requests to tell"):
        LoadOutcome({"requests": 1000, "ok": 1000, "p99_ms": 40.0}, tmp_path, "multi-active").expect_tier()
    assert LoadOutcome({"requests": 0}, tmp_path, "single-point").violations() == ["no request completed during the load"]


def test_a_sweep_result_lists_every_rate_no_configuration_serves(tmp_path: Path) -> None:
    def point(precision: str, batch: int, level: float, meets: bool, status: str = "ok") -> dict:
        return {"precision": precision, "max_batch_size": batch, "load_level": level, "status": status,
                "windows": 3 if status == "ok" else 0, "meets_slo": meets, "slo_verdict": "p99 900 ms > 500 ms",
                "reason": "deployment failed" if status == "error" else ""}

    write_json(tmp_path / "sweep" / "sweep_summary.json", {"slo": {"p99_ms": 500.0}, "points": [
        point("fp32", 1, 50.0, False), point("fp32", 32, 50.0, True), point("fp16", 32, 50.0, False, status="error"),
        point("fp32", 1, 150.0, False), point("fp32", 32, 150.0, False), point("fp16", 32, 300.0, False, status="timeout"),
    ]})
    result = SweepResult(_session(tmp_path), tmp_path / "sweep")
    with pytest.raises(ScenarioFailed) as caught:
        result.expect_slo_met_at_every_rate()
    assert caught.value.findings == [
        "150 rps: no configuration met the SLO (fp32 batch=1 at 150 rps: p99 900 ms > 500 ms; "
        "fp32 batch=32 at 150 rps: p99 900 ms > 500 ms)",
        "300 rps: no configuration was measured (timeout)",
    ]
    with pytest.raises(ScenarioFailed, match="fp16 batch=32 at 50 rps: deployment failed"):
        result.expect_no_errors()


def test_capacity_scaling_is_judged_only_where_replicas_had_their_own_cores(tmp_path: Path) -> None:
    def capacity(cores: list[int], ratio: float) -> CapacityResult:
        plan = {"target_rps": 1000.0, "p99_ms": 500.0, "headroom": 0.3, "per_replica_rps": 300.0,
                "required_rps": 1300.0, "replicas": 5}
        points = [{"replicas": 1, "predicted_rps": 300.0, "measured_rps": 300.0, "ratio": 1.0},
                  {"replicas": 2, "predicted_rps": 600.0, "measured_rps": 600.0 * ratio, "ratio": ratio}]
        write_json(tmp_path / "capacity.json", {"plan": plan, "points": points, "note": "shared",
                                                "config": {"cores": cores, "generator_cpus": cores[-1:]}})
        return CapacityResult(tmp_path)

    capacity([0, 1], 0.5).expect_plan()
    with pytest.raises(NotApplicable, match=r"exceed the 1 core\(s\)"):
        capacity([0, 1], 0.5).expect_scaling()
    capacity([0, 1, 2], 0.9).expect_scaling()
    with pytest.raises(ScenarioFailed, match="2 replicas sustained 300.0 rps, 0.50 of the predicted 600.0"):
        capacity([0, 1, 2], 0.5).expect_scaling()
