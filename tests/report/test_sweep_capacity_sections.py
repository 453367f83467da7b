"""The sweep and capacity sections: effects from max rates, bounds said in tables, charts and summary.json,
and numbers formatted for people."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from harness.jsonfile import write_json
from harness.report.sections import collect_sections
from harness.report.writer import format_cell, write_report

ISSUE_SWEEP = Path(__file__).parents[1] / "sweep" / "data" / "issue21_smoke_sweep.csv"


def _search(low: float, high: float | None, converged: bool = True) -> dict:
    probes = [{"rate_rps": low / 2, "verdict": "pass", "reason": "ok",
               "measurement": {"throughput_rps": low / 2, "p99_ms": 80.0, "p50_ms": 40.0, "windows": 2}},
              {"rate_rps": low, "verdict": "pass", "reason": "ok",
               "measurement": {"throughput_rps": low, "p99_ms": 300.0, "p50_ms": 90.0, "windows": 2}}]
    if high:
        probes.append({"rate_rps": high, "verdict": "clear-fail", "reason": "overloaded",
                       "measurement": {"throughput_rps": high * 0.9, "p99_ms": 1500.0, "p50_ms": 900.0, "windows": 1}})
    return {"max_rate_rps": low, "lower_rps": low, "upper_rps": high, "converged": converged,
            "stop_reason": "converged" if converged else "timeout", "detail": "test", "probe_count": len(probes),
            "probes": probes}


def _sweep_dir(root: Path, searches: dict | None) -> Path:
    directory = root / "sweep"
    directory.mkdir(parents=True)
    shutil.copyfile(ISSUE_SWEEP, directory / "sweep.csv")
    write_json(directory / "sweep_summary.json", {
        "slo": {"p99_ms": 500.0, "max_error_rate": 0.01}, "load_mode": "rate", "searches": searches or {},
        "accuracy": [{"precision": "fp32", "status": "ok", "forward_ms_by_batch": {"1": 1.0, "32": 12.0}},
                     {"precision": "bf16", "status": "ok", "max_abs_error": 1e-4, "forward_ms_by_batch": {"1": 0.9, "32": 5.0}}],
    })
    return directory


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_effects_are_recomputed_from_saved_searches_with_bounds_said(tmp_path):
    searches = {"fp32/1": _search(133.0, 139.0), "fp32/32": _search(548.7, 576.0),
                "bf16/1": _search(138.0, 144.0), "bf16/32": _search(990.0, None, converged=False)}
    _sweep_dir(tmp_path, searches)
    (section,) = [s for s in collect_sections(tmp_path) if s.kind == "sweep"]
    tables = dict(section.tables)
    rates = {(r["precision"], r["batch"]): r["max rate (req/s)"]
             for r in tables["max rate under p99 <= 500 ms per configuration"]}
    assert rates[("fp32", 32)] == "548.7" and rates[("bf16", 32)] == "at least 990.0"
    batching = {r["precision"]: r for r in next(rows for caption, rows in section.tables if caption.startswith("batching"))}
    assert batching["fp32"]["effect"] == f"{548.7 / 133.0:.2f}"
    assert batching["fp32"]["forward-pass speed-up"] == f"{1.0 / (12.0 / 32):.2f}"
    assert batching["bf16"]["effect"].startswith("at least")  # numerator unbounded above
    assert any("bf16 batch 32: max rate at least 990.0 req/s is a bound" in f for f in section.findings)
    assert section.summary["max_rates"]["bf16/32"]["bound"] == "at least"
    assert section.summary["max_rates"]["bf16/32"]["text"] == "at least 990.0"
    paths = write_report(tmp_path)
    summary = json.loads(paths["summary"].read_text())
    (saved,) = [s for s in summary["sections"] if s["kind"] == "sweep"]
    assert saved["summary"]["max_rates"]["bf16/32"]["text"] == "at least 990.0"  # summary.json says it too
    markdown = paths["markdown"].read_text()
    assert "at least 990.0" in markdown and "e+0" not in markdown.split("## How the verdicts")[0]
    assert len(_images(paths["html"].read_text())) == 2  # the frontier with its knees, the max rates


def test_a_grid_that_tops_out_gives_no_effect_of_one(tmp_path):
    _sweep_dir(tmp_path, None)  # the issue's smoke sweep: 50 and 150 rps, no search
    (section,) = [s for s in collect_sections(tmp_path) if s.kind == "sweep"]
    batching = next(rows for caption, rows in section.tables if caption.startswith("batching"))
    precision = next(rows for caption, rows in section.tables if caption.startswith("precision"))
    effects = [r["effect"] for r in batching + precision]
    assert "1.00" not in effects and "at least 1.00" in effects and "n/a" in effects
    rates = next(rows for caption, rows in section.tables if caption.startswith("max rate"))
    assert all(r["max rate (req/s)"].startswith("at least") for r in rates)


def test_capacity_plan_from_a_search_that_did_not_converge_says_how_far_off_it_may_be(tmp_path):
    directory = tmp_path / "capacity"
    directory.mkdir()
    search = _search(548.7, 1005.7, converged=False)
    write_json(directory / "capacity.json", {
        "plan": {"target_rps": 1000.0, "p99_ms": 500.0, "headroom": 0.3, "per_replica_rps": 548.7, "required_rps": 1300.0,
                 "replicas": 3, "assumption": "Linear scaling", "per_replica_converged": False,
                 "per_replica_upper_rps": 1005.7, "fewest_replicas": 2,
                 "per_replica_text": "at least 548.7 rps (below 1005.7)",
                 "bound_note": "the per-replica search did not converge (timeout): between 2 and 3 replicas are needed"},
        "allowed_replicas": 2, "planned_fits": False,
        "points": [{"replicas": 1, "predicted_rps": 548.7, "measured_rps": 548.7, "ratio": 1.0, "search": search,
                    "converged": False, "measured": "at least 548.7 (below 1005.7)"}],
        "worst_ratio": None, "note": "",
    })
    (section,) = collect_sections(tmp_path)
    assert "at most 3 replicas with one replica sustaining at least 548.7 rps (below 1005.7)" in section.paragraphs[0]
    assert any("between 2 and 3 replicas" in p for p in section.paragraphs)
    assert section.summary["per_replica_converged"] is False and section.summary["fewest_replicas"] == 2
    verdict = write_report(tmp_path)  # the first line says the plan is a bound too
    assert "Capacity: at most 3 replicas for 1000 req/s (one replica's search did not converge" in \
        Path(verdict["markdown"]).read_text()
    assert section.tables[0][1][0]["measured (req/s)"] == "at least 548.7 (below 1005.7)"
    assert len(section.figures) == 1


@pytest.mark.parametrize(("column", "value", "text"), [
    ("started_s", 1796519100.417977, "2026-12-06 01:05:00.418 UTC"),  # a timestamp, not 1.797e+09
    ("duration_s", 2.0, "2.00"),
    ("elapsed (s)", 100.67, "100.67"),
    ("p99_ms", 1542.444344, "1542.4"),
    ("rss_mb", 12345.678, "12345.7"),  # not 1.235e+04
    ("throughput (req/s)", 1097.25, "1097.2"),
    ("measured_rps", 123456.0, "123456.0"),
    ("cpu (%)", 56.04, "56.0"),
    ("requests", 1616, "1616"),
    ("ratio", 0.72744, "0.7274"),
    ("count", 123456.7, "123457"),
    ("max_abs_error", 4.438e-05, "4.438e-05"),  # a tiny error keeps its exponent
    ("meets SLO", True, "True"),
    ("anything", float("nan"), "n/a"),
    ("anything", None, "n/a"),
])
def test_numbers_are_formatted_by_their_column_unit(column, value, text):
    assert format_cell(column, value) == text
