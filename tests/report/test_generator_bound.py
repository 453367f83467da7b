"""A load whose generator was saturated says, in result.json and in the report, that its figures are a lower bound,
why (each finding in words, from one process or several) and what would lift it."""

from __future__ import annotations

import json
from pathlib import Path

from harness.load.cpu_sampler import check_saturation
from harness.load.profiles import LoadProfile
from harness.load.result import result_from_records
from harness.load.session import build_result
from harness.report.perf_sections import load_section
from harness.request_records import RequestRecord

from .conftest import T0, write_load


def _saturated(directory: Path, generator: dict | None) -> dict:
    write_load(directory, seed=3)
    result = json.loads((directory / "result.json").read_text())
    result.update(generator_saturated=True, **({"generator": generator} if generator else {}))
    return result


def test_the_report_says_why_the_generator_limited_and_that_the_figures_are_a_lower_bound(tmp_path):
    why = "worker 1: CPU above 90% of one core in 80% of its samples; the master: CPU above 90% of one core in 60% of its samples"
    section = load_section(tmp_path / "load", _saturated(tmp_path / "load", {"workers": 2, "saturated_why": why}), tmp_path)
    finding = next(f for f in section.findings if f.startswith("load generator saturated"))
    assert f"({why}, from 2 process(es))" in finding and "lower bound" in finding and "--load-workers" in finding
    assert f"The load generator was saturated ({why})" in section.paragraphs[0]
    older = load_section(tmp_path / "old", _saturated(tmp_path / "old", None), tmp_path)  # a run saved before the block
    assert any("(CPU above 90% of a core, from 1 process(es))" in f for f in older.findings)


def test_one_saturated_process_records_why_in_the_same_words_as_several():
    records = [RequestRecord(T0 + i * 0.01, T0 + i * 0.01, 5.0, 200, True, "", "locust") for i in range(100)]
    busy = check_saturation([(T0 + i * 0.5, 99.0) for i in range(3)], T0, T0 + 1.0, 0.5)
    load = result_from_records(records, source="locust", cpu=busy, exit_code=0, hard_killed=False, started_s=T0,
                               ended_s=T0 + 1.0, paths={})
    data = build_result(load, LoadProfile(duration_s=1))
    assert data["generator_saturated"] and data["generator"] == {
        "workers": 1, "saturated_why": f"CPU above 90% of one core in {busy.busy_fraction:.0%} of its samples"}
    calm = result_from_records(records, source="locust", cpu=check_saturation([(T0, 20.0)], T0, T0 + 1.0, 0.5),
                               exit_code=0, hard_killed=False, started_s=T0, ended_s=T0 + 1.0, paths={})
    assert "generator" not in build_result(calm, LoadProfile(duration_s=1))
