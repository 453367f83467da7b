"""`harness load` judges its load by the one judgement (`judge_load`, through `run_load`): it passes the SLO
of --p99-ms / --max-error-rate (defaults from `harness.slo`), prints the verdict as its last line, and
keeps exit 0 whatever the verdict. The workflow is replaced: nothing is deployed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.measure.load_verdict import judge_load
from harness.results import new_run_record
from harness.slo import DEFAULT_MAX_ERROR_RATE, DEFAULT_P99_MS, Slo

SLOW = {"requests": 400, "ok": 394, "errors": 6, "throughput_rps": 20.0, "p50_ms": 120.0, "p95_ms": 480.0,
        "p99_ms": 640.0, "generator_saturated": False}


@pytest.fixture
def contexts_seen(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    from harness.workflows.load import LoadRun

    seen: list[Any] = []

    def run_load(settings: Any, context: Any, **_: Any) -> LoadRun:
        seen.append(context)
        record = new_run_record("load", command=["harness", "load"], inspect_torch=False)
        return LoadRun(dict(SLOW), context.out_dir, record, judge_load(SLOW, context.slo))

    monkeypatch.setattr("harness.workflows.load.run_load", run_load)
    return seen


def _load(tmp_path: Path, *flags: str) -> list[str]:
    return ["load", "--duration-s", "5", "--no-pin", "--out", str(tmp_path / "run"), *flags]


def test_the_verdict_is_the_last_line_and_the_exit_code_stays_0(tmp_path, capsys, contexts_seen):
    from harness.cli import main

    assert main(_load(tmp_path)) == 0
    assert contexts_seen[0].slo == Slo(DEFAULT_P99_MS, DEFAULT_MAX_ERROR_RATE)
    out, err = capsys.readouterr()
    verdict = judge_load(SLOW)
    assert err.rstrip().splitlines()[-1].endswith(f"verdict: {verdict.line()}")
    assert json.loads(out)["slo_verdict"] == "not met" and json.loads(out)["p99_ms"] == 640.0


def test_the_slo_flags_reach_the_judgement(tmp_path, capsys, contexts_seen):
    from harness.cli import main

    assert main(_load(tmp_path, "--p99-ms", "700", "--max-error-rate", "0.02")) == 0
    assert contexts_seen[0].slo == Slo(700.0, 0.02)
    assert "verdict: SLO (p99 <= 700 ms, errors <= 2%) met" in capsys.readouterr().err


@pytest.mark.parametrize("flags, named", [(["--p99-ms", "0"], "--p99-ms=0.0"),
                                          (["--max-error-rate", "1.5"], "--max-error-rate=1.5")])
def test_a_bad_slo_flag_is_exit_2_naming_it_before_anything_runs(tmp_path, capsys, contexts_seen, flags, named):
    from harness.cli import main

    assert main(_load(tmp_path, *flags)) == 2
    assert named in capsys.readouterr().err and contexts_seen == []


def test_a_relative_out_reaches_the_workflow_resolved_once(tmp_path, monkeypatch, contexts_seen):
    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["load", "--duration-s", "5", "--no-pin", "--out", "rel/run"]) == 0
    assert contexts_seen[0].out_dir == tmp_path / "rel" / "run"
