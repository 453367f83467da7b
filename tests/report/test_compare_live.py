"""`harness bench ab` and `harness compare` on live builds: a slowed build is a regression, the same build is not.

Bounded (under two minutes on 2 cores): an A/A session of 3 pairs and an A/B session of 6 pairs of
short rounds. The slowed build is 3x slower in every forward pass (slow-inference factor=3) at 3 req/s,
far below even its own knee, so that 6 pairs find it even when a burst of other work on a shared
machine doubles one round; `harness bench compare` measures the 10% case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

# serial: a regression judged on this machine's timing; `make test` runs these alone, after the parallel part
pytestmark = pytest.mark.serial

SESSION = ["--duration-s", "2", "--warmup-s", "0.3", "--rate-rps", "3"]


def _ab(out: Path, rounds: int, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "harness", "bench", "ab", "--rounds", str(rounds), *SESSION, "--out", str(out), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_a_slowed_build_is_flagged_paired_and_the_same_build_is_not(tmp_path: Path, capsys) -> None:
    same = _ab(tmp_path / "same", 3)
    assert same.returncode == 0, same.stdout + same.stderr[-3000:]
    assert "REGRESSED" not in same.stdout
    slowed = _ab(tmp_path / "slowed", 6, "--fault-b", "slow-inference", "--fault-param-b", "factor=3")
    assert slowed.returncode == 1, slowed.stdout + slowed.stderr[-3000:]
    assert "REGRESSED" in slowed.stdout and "paired t on log-ratios" in slowed.stdout

    comparison = json.loads((tmp_path / "slowed" / "comparison.json").read_text())
    p50 = next(row for row in comparison["rows"] if row["metric"] == "load:p50_ms")
    assert p50["verdict"] == "regressed" and p50["change"] > 0.5
    b = json.loads((tmp_path / "slowed" / "b" / "result.json").read_text())
    assert b["round_count"] == 6 and b["injected_fault"]["params"]["factor"] == 3
    assert [r["pair"] for r in b["rounds"]] == [1, 2, 3, 4, 5, 6]

    # the saved sessions compare the same way from the command line
    assert main(["compare", str(tmp_path / "same" / "b"), "--baseline", str(tmp_path / "same" / "a")]) == 0
    assert main(["compare", str(tmp_path / "slowed" / "b"), "--baseline", str(tmp_path / "slowed" / "a")]) == 1
    assert "regression" in capsys.readouterr().err
