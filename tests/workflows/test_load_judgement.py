"""A load is judged one way: `harness.measure.load_verdict.judge_load`, called by `run_load` (and so by
`harness load`, the main job's load stage and the load scenarios), by the scenarios' `LoadOutcome` and by
the report; nothing above the measure layer judges a load with the pieces judge_load is made of.

The generator is replaced (no process starts), as in test_load_workflow.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from harness.config import load_spec
from harness.errors import ConfigError
from harness.load.session import RateLoad
from harness.measure.load_verdict import NOT_MET, judge_load
from harness.results import load_run, new_run_record
from harness.slo import Slo
from harness.workflows.context import RunContext
from harness.workflows.load import LoadSettings, run_load

PACKAGE = Path(__file__).resolve().parents[2] / "harness"
# what judge_load is made of: no module outside harness/measure judges a load with them
PIECES = {"evaluate_steady", "check_p99", "p99_alerts", "check_alerts", "raised_alerts", "check_alerts_against"}
SLOW = {"requests": 400, "ok": 394, "errors": 6, "throughput_rps": 20.0, "p50_ms": 120.0, "p95_ms": 480.0,
        "p99_ms": 640.0, "generator_saturated": False}


def test_no_module_above_measure_judges_a_load_with_the_pieces_of_judge_load():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("measure/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness."):
                offenders += [f"{relative}:{node.lineno} imports {a.name}" for a in node.names if a.name in PIECES]
    assert offenders == []


class _Deployment:
    endpoint = "http://127.0.0.1:1"
    events_path = None

    def close(self) -> None:
        pass


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the load session: it writes a slow load's result.json (p99 640 ms, 1.5% errors)."""
    calls: list[dict[str, Any]] = []

    def session(deployment: Any, load: Any, out: Path, **options: Any) -> dict[str, Any]:
        calls.append(options)
        out.mkdir(parents=True, exist_ok=True)
        result = {**SLOW, "profile": load.model_dump(), **options["metadata"]}
        (out / "result.json").write_text(json.dumps(result), encoding="utf-8")
        return result

    monkeypatch.setattr("harness.load.session.run_session", session)
    monkeypatch.setattr("harness.platforms.base.copy_events", lambda deployment, out: None)
    return calls


def _settings(**more: Any) -> LoadSettings:
    return LoadSettings(load=RateLoad(20.0, 20.0), telemetry=False, **more)


def _context(out: Path, slo: Slo | None = None) -> RunContext:
    return RunContext(out, spec=load_spec(None), slo=slo or Slo())


def test_run_load_judges_the_load_and_records_the_verdict_with_its_slo(tmp_path, measured):
    run = run_load(_settings(), _context(tmp_path / "load", Slo(700.0, 0.02)), deployment=_Deployment())
    assert run.verdict == judge_load(run.result, Slo(700.0, 0.02)) and run.verdict.met
    record = load_run(run.out_dir)
    assert record.config["slo"] == {"p99_ms": 700.0, "max_error_rate": 0.02} and record.config["tier"] is None
    assert record.summary["verdict"] == run.verdict.to_dict()
    strict = run_load(_settings(), _context(tmp_path / "strict"), deployment=_Deployment())
    assert strict.verdict.outcome == NOT_MET
    assert strict.verdict.reasons == ["p99 640.0 ms > SLO 500 ms", "6 of 400 requests failed (1.50%) > SLO 1.00%"]


def test_an_unknown_tier_is_refused_before_anything_is_measured(tmp_path, measured):
    with pytest.raises(ConfigError, match="tier='gold'"):
        run_load(_settings(tier="gold"), _context(tmp_path / "load"), deployment=_Deployment())
    assert measured == []


def test_the_main_jobs_load_stage_fails_with_the_verdicts_reasons(tmp_path, measured):
    from harness.job import get_job_preset
    from harness.job.engine import JobContext
    from harness.job.outcomes import FAIL
    from harness.job.stages import load_stage
    from harness.workflows.load import CpuPlan

    lines: list[str] = []
    record = new_run_record("run", command=["harness", "run", "tiny"], inspect_torch=False, profile="tiny")
    ctx = JobContext(get_job_preset("tiny"), tmp_path, record, baseline=None, progress=lines.append)
    released: list[str] = []
    ctx.hold("deployment", _Deployment(), lambda: released.append("deployment"))
    ctx.values.update(spec=load_spec(None), cpu_plan=CpuPlan(None, None))
    outcome = load_stage(ctx)
    expected = judge_load(SLOW)
    assert outcome.verdict == FAIL and outcome.findings == expected.reasons
    assert expected.line() in lines and released == ["deployment"]
    assert load_run(tmp_path / "load").summary["verdict"]["outcome"] == NOT_MET


def test_a_load_scenarios_outcome_is_the_same_judgement_with_its_tier(tmp_path):
    from harness.scenarios.perf import LoadOutcome

    outcome = LoadOutcome(SLOW, tmp_path, "active-standby")
    assert outcome.violations() == judge_load(SLOW, tier="active-standby").reasons
    assert outcome.violations()[:2] == ["p99 640.0 ms > SLO 500 ms", "6 of 400 requests failed (1.50%) > SLO 1.00%"]
    assert LoadOutcome(SLOW, tmp_path, "single-point", slo=Slo(1000.0, 0.05)).violations() == []


def test_the_report_rebuilds_the_recorded_verdict_from_saved_data(tmp_path, measured):
    from harness.report.perf_sections import load_section, load_verdict

    run = run_load(_settings(), _context(tmp_path / "load", Slo(600.0, 0.01)), deployment=_Deployment())
    assert load_verdict(run.out_dir, run.result).to_dict() == run.verdict.to_dict()
    section = load_section(run.out_dir, run.result, tmp_path)
    assert section.failed and f"Verdict: {run.verdict.line()}." in section.paragraphs
    assert section.summary["verdict"]["outcome"] == NOT_MET


def test_a_round_of_a_load_in_rounds_is_judged_by_its_loads_slo(tmp_path, measured):
    from harness.report.perf_sections import load_verdict

    run = run_load(_settings(), _context(tmp_path / "load", Slo(700.0, 0.02)), deployment=_Deployment())
    round_dir = run.out_dir / "round-01"
    round_dir.mkdir()
    assert load_verdict(round_dir, SLOW).slo == Slo(700.0, 0.02) and load_verdict(round_dir, SLOW).met
    other = run.out_dir / "elsewhere"
    other.mkdir()
    assert load_verdict(other, SLOW).slo == Slo()  # only a round takes its load's
