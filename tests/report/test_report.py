"""Reports rebuilt from saved run data alone (no live run)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.report.compare import compare_runs
from harness.report.sections import collect_sections
from harness.report.writer import write_report

from .conftest import write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_is_self_contained_with_every_chart_drawn(saved_run: Path) -> None:
    paths = write_report(saved_run)
    html = paths["html"].read_text(encoding="utf-8")
    images = _images(html)
    # load: throughput/latency + telemetry; chaos: timeline + telemetry; sweep: frontier + batch effect; capacity: 1
    assert len(images) == 7
    assert all(image.startswith(PNG_MAGIC) and len(image) > 2000 for image in images)
    assert "src=\"http" not in html and "<script" not in html  # nothing fetched when opened
    assert "Resilience matrix" in html and "Capacity plan" in html and "Environment" in html
    assert html.index("class=\"verdict pass\"") < html.index("<h2>")  # the verdict comes first


def test_summary_and_markdown_hold_the_verdict_and_sections(saved_run: Path) -> None:
    paths = write_report(saved_run)
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["passed"] is True
    kinds = [s["kind"] for s in summary["sections"]]
    assert kinds == ["load", "matrix", "chaos", "sweep", "capacity"]
    chaos = next(s for s in summary["sections"] if s["kind"] == "chaos")
    assert chaos["summary"]["ttr_s"] == 2.0
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert markdown.startswith("# ") and "**Verdict:** PASS." in markdown
    assert "| fault | topology |" in markdown


def test_failing_chaos_run_fails_the_verdict_and_lists_every_violation(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", failing_chaos=True)
    paths = write_report(run)
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["passed"] is False
    chaos = next(s for s in summary["sections"] if s["kind"] == "chaos")
    assert len(chaos["findings"]) == 2
    html = paths["html"].read_text(encoding="utf-8")
    assert "single-point tier" in html and "over 500 ms" in html
    assert "class=\"bad\"" in html  # the matrix cell that missed its tier is coloured


def test_fp16_points_that_timed_out_are_listed_not_dropped(saved_run: Path) -> None:
    sweep = next(s for s in collect_sections(saved_run) if s.kind == "sweep")
    assert any("fp16" in finding and "timeout" in finding for finding in sweep.findings)


def test_report_of_one_part_alone(saved_run: Path) -> None:
    paths = write_report(saved_run / "chaos" / "pod-kill-single")
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert [s["kind"] for s in summary["sections"]] == ["chaos"]
    assert len(_images(paths["html"].read_text(encoding="utf-8"))) == 2


def test_unreadable_part_is_named_and_the_rest_still_reported(saved_run: Path) -> None:
    (saved_run / "load" / "result.json").write_text("{not json", encoding="utf-8")
    paths = write_report(saved_run)
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert any("load" in entry for entry in summary["unreadable"])
    assert "chaos" in [s["kind"] for s in summary["sections"]]


def test_empty_directory_reports_nothing_measured(tmp_path: Path) -> None:
    summary = json.loads(write_report(tmp_path)["summary"].read_text(encoding="utf-8"))
    assert summary["passed"] is False and "nothing was measured" in summary["verdict"]


def test_rerun_of_the_same_build_is_not_a_regression(tmp_path: Path) -> None:
    baseline = write_run(tmp_path / "a", seed=1)
    current = write_run(tmp_path / "b", seed=2)
    result = compare_runs(current, baseline)
    assert result["rows"] and result["regressions"] == []
    assert {row["metric"] for row in result["rows"]} >= {"load:throughput_rps", "load:p99_ms", "chaos/pod-kill-single:ttr_s"}


def test_a_single_load_run_is_inconclusive_never_judged_on_its_windows(tmp_path: Path) -> None:
    # one run without rounds: its windows share a deployment and a moment, so they are not repeats
    baseline = write_run(tmp_path / "a", seed=1, latency_ms=20.0)
    current = write_run(tmp_path / "b", seed=2, latency_ms=30.0)
    result = compare_runs(current, baseline)
    load = {row["metric"]: row for row in result["rows"] if row["metric"].startswith("load:")}
    assert load["load:p50_ms"]["verdict"] == "inconclusive" and load["load:p50_ms"]["change"] > 0.3
    assert "neither run has rounds" in load["load:p50_ms"]["reason"] and "--rounds" in load["load:p50_ms"]["reason"]
    assert result["regressions"] == []


def test_compare_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_run(tmp_path / "a", seed=1)
    same = write_run(tmp_path / "b", seed=2)
    slow = write_run(tmp_path / "c", seed=3, failing_chaos=True)  # the pod-kill outage grew from 2 s to 6 s
    assert main(["compare", str(same), "--baseline", str(baseline)]) == 0
    assert main(["compare", str(slow), "--baseline", str(baseline)]) == 1
    assert "regression" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing"), "--baseline", str(baseline)]) == 2
    assert main(["compare", str(same), "--baseline", str(baseline), "--alpha", "2"]) == 2


def test_report_cli_with_baseline_shows_the_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_run(tmp_path / "a", seed=1)
    current = write_run(tmp_path / "b", seed=2, failing_chaos=True)
    assert main(["report", str(current), "--baseline", str(baseline)]) == 0
    html = (current / "report.html").read_text(encoding="utf-8")
    assert "Comparison with the baseline" in html and "regressed" in html
    assert "FAIL." in html  # a regression fails the report's verdict


def test_environment_difference_is_warned(tmp_path: Path) -> None:
    baseline = write_run(tmp_path / "a", seed=1)
    current = write_run(tmp_path / "b", seed=2)
    run = json.loads((current / "run.json").read_text(encoding="utf-8"))
    run["environment"]["cpu"]["model"] = "Some Other CPU"
    (current / "run.json").write_text(json.dumps(run), encoding="utf-8")
    result = compare_runs(current, baseline)
    assert any("cpu.model" in warning for warning in result["warnings"])


def test_a_finished_job_shows_its_stages_and_where_it_ran(saved_run: Path) -> None:
    from harness.results import load_run, save_run

    record = load_run(saved_run)
    record.config = {"target": {"platform": "kubernetes", "namespace": "nightly", "endpoint": None, "context": None,
                                "spec": "/etc/harness/spec.yaml"}}
    record.summary = {"stages": {
        "deploy": {"name": "deploy", "status": "completed", "verdict": None, "reason": None, "findings": [],
                   "elapsed_s": 1.5, "budget_s": 60.0},
        "sweep": {"name": "sweep", "status": "skipped", "verdict": None, "reason": "the harness only attaches",
                  "findings": [], "elapsed_s": 0.0, "budget_s": 0.0},
    }}
    save_run(saved_run, record)
    paths = write_report(saved_run)
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "## Job stages" in markdown and "namespace nightly" in markdown
    assert "Not run to the end: sweep (skipped)" in markdown
    assert "| sweep | skipped |" in markdown and "the harness only attaches" in markdown
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert [s["name"] for s in summary["job"]["stages"]] == ["deploy", "sweep"]

    # while the job runs, the report stage hands over the stages so far
    live = {"target": {"platform": "local"}, "stages": [{"name": "load", "status": "failed", "reason": "boom"}]}
    markdown = write_report(saved_run, job=live)["markdown"].read_text(encoding="utf-8")
    assert "Ran on the local platform" in markdown and "load (failed)" in markdown and "sweep" not in markdown.split("## Job stages")[1].split("##")[0]


def test_a_single_run_has_no_job_stage_table(saved_run: Path) -> None:
    markdown = write_report(saved_run / "chaos" / "pod-kill-single")["markdown"].read_text(encoding="utf-8")
    assert "Job stages" not in markdown


def test_an_unreadable_run_record_is_reported_not_raised(saved_run: Path) -> None:
    (saved_run / "run.json").write_text("{not json", encoding="utf-8")
    paths = write_report(saved_run)
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert any("run.json" in line for line in summary["unreadable"]), summary["unreadable"]
    assert "unreadable:" in paths["markdown"].read_text(encoding="utf-8")


def _cell(root: Path, name: str, outcome: str, reasons: list[str]) -> None:
    from harness.jsonfile import write_json

    from .conftest import write_chaos

    write_chaos(root / "chaos" / name)
    result = json.loads((root / "chaos" / name / "result.json").read_text(encoding="utf-8"))
    result.update(outcome=outcome, reasons=reasons, unavailability_s=2.05, tier_met=outcome == "met",
                  budget={"error_budget_s": 25920.0, "faults_per_period": 30.0, "projected_burn": 0.0023,
                          "projected_burn_high": 0.003})
    write_json(root / "chaos" / name / "result.json", result)


def test_the_first_paragraph_names_each_red_cell_with_its_reason_and_what_was_inconclusive(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _cell(run, "oom-kill-single", "not met", ["expected alert memory-growth did not fire: monitoring would miss this fault"])
    _cell(run, "pod-kill-multi", "inconclusive", ["multi-active: failed requests: too few samples to tell"])
    _cell(run, "pod-kill-single", "met", [])
    summary = json.loads(write_report(run)["summary"].read_text(encoding="utf-8"))
    first = summary["verdict"]
    assert first.startswith("FAIL. Chaos: 1 of 3 cells met their SLA tier, 1 did not, 1 inconclusive.")
    assert "Not met: pod-kill on single: expected alert memory-growth did not fire" in first
    assert "Inconclusive (not a failure): pod-kill on single: multi-active: failed requests: too few samples" in first
    assert "Largest projected error-budget burn: 0.23%" in first
    (run / "chaos" / "oom-kill-single" / "result.json").unlink()
    summary = json.loads(write_report(run)["summary"].read_text(encoding="utf-8"))
    assert summary["passed"] is True and summary["verdict"].startswith("PASS (with inconclusive cells).")
    html = (run / "report.html").read_text(encoding="utf-8")
    assert 'class="verdict unsure"' in html and "How the verdicts are judged" in html
    assert "Unavailability" in html and "Error budget" in html  # the definitions are quoted from their modules


def test_a_stage_that_could_not_run_fails_the_first_paragraph(saved_run: Path) -> None:
    live = {"target": {"platform": "local"}, "stages": [
        {"name": "load", "status": "failed", "reason": "HarnessError: the load generator wrote no records to /x/requests.csv"}]}
    summary = json.loads(write_report(saved_run, job=live)["summary"].read_text(encoding="utf-8"))
    assert summary["passed"] is False
    assert summary["verdict"].startswith("FAIL. Stage load could not run: HarnessError: the load generator wrote no records")
