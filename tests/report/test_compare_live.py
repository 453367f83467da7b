"""`harness compare` on real `harness load` runs: a slowed build is a regression, a rerun is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.report.compare import Thresholds, compare_runs

DURATION_S = "9"
MODEL = "tiny-mlp"  # loads in a moment; latency is set by the batcher's queue delay, so it is steady


def _load(out: Path, *extra: str) -> None:
    argv = [sys.executable, "-m", "harness", "load", "--topology", "single", "--profile", "steady",
            "--duration-s", DURATION_S, "--users", "4", "--model", MODEL, "--no-prober", "--out", str(out), *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_slow_inference_fault_is_flagged_and_a_rerun_is_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline, rerun, slowed = tmp_path / "baseline", tmp_path / "rerun", tmp_path / "slowed"
    _load(baseline)
    _load(rerun)
    _load(slowed, "--inject-fault", "slow-inference", "--fault-param", "delay_ms=60")

    thresholds = Thresholds(window_s=1.0)
    same = compare_runs(rerun, baseline, thresholds)
    assert same["rows"] and same["regressions"] == [], same["regressions"]
    worse = compare_runs(slowed, baseline, thresholds)
    flagged = " ".join(worse["regressions"])
    assert ".:p50_ms" in flagged and ".:throughput_rps" in flagged

    assert main(["compare", str(rerun), "--baseline", str(baseline), "--window-s", "1"]) == 0
    assert main(["compare", str(slowed), "--baseline", str(baseline), "--window-s", "1"]) == 1
    assert "regression" in capsys.readouterr().err
