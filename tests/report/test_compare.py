"""`harness compare` end to end on saved run directories (synthetic result.json files, relative paths).

Load parts carry rounds (as `harness load --rounds N` and `harness bench ab` write them); chaos parts
are matched per fault x topology (``chaos/pod-kill/single``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.jsonfile import write_json
from harness.report.compare import compare_runs
from harness.results import new_run_record, save_run


def _record(root: Path) -> None:
    record = new_run_record("run", command=["harness", "run"], inspect_torch=False)
    record.finish("completed")
    save_run(root, record)


def write_load_rounds(directory: Path, p50s, *, mode: str = "rate", interleave: dict | None = None) -> None:
    """A load run with rounds: round-NN/ parts and the top-level summary with the rounds list."""
    rounds = []
    for index, p50 in enumerate(p50s, start=1):
        row = {"round": index, "dir": f"round-{index:02d}", "p50_ms": p50, "p95_ms": p50 * 1.2, "p99_ms": p50 * 1.4,
               "throughput_rps": 8.0, "requests": 16, "errors": 0, "started_s": 1_700_000_000.0 + 10 * index}
        if interleave:
            row.update({"pair": index, "position": 2 * index})
        rounds.append(row)
        write_json(directory / row["dir"] / "result.json", {**row, "round": {"index": index}, "load_mode": mode})
    write_json(directory / "result.json", {
        "kind": "load", "load_mode": mode, "profile": {"kind": "rate", "rate_rps": 8.0, "duration_s": 2.0},
        "rounds": rounds, "round_count": len(rounds), "p50_ms": float(np.median(p50s)),
        "p99_ms": float(np.median(p50s)) * 1.4, "throughput_rps": 8.0, "requests": 16 * len(rounds), "errors": 0,
        **({"interleave": interleave} if interleave else {}),
    })


def write_chaos_cell(directory: Path, *, ttr_s: float, failed: int = 36, total: int = 80,
                     unavailability_s: float | None = None) -> None:
    data = {"experiment": "pod-kill", "fault": "pod-kill", "topology": "single", "ttr_s": ttr_s, "recovered": True,
            "outage_s": ttr_s, "failed_requests": failed, "total_requests": total}
    if unavailability_s is not None:
        data["unavailability_s"] = unavailability_s
    write_json(directory / "result.json", data)


def write_build(root: Path, *, seed: int, slowdown: float = 1.0, ttr_s: float = 1.8, failed: int = 36) -> Path:
    rng = np.random.default_rng(seed)
    write_load_rounds(root / "load", 60.0 * slowdown * rng.lognormal(0.0, 0.01, size=5))
    write_chaos_cell(root / "chaos" / "pod-kill" / "single", ttr_s=ttr_s, failed=failed,
                     unavailability_s=ttr_s - 0.2)
    _record(root)
    return root


def test_compare_fails_a_slower_startup_and_passes_a_rerun_with_relative_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_build(Path("reports/base"), seed=1)
    write_build(Path("reports/rerun"), seed=2, ttr_s=2.3, failed=38)  # the same build, measured again
    write_build(Path("reports/slow-startup"), seed=3, ttr_s=7.2, failed=60)  # start-up delay 5 s longer

    assert main(["compare", "reports/rerun", "--baseline", "reports/base"]) == 0
    out = capsys.readouterr().out
    assert "chaos/pod-kill/single:ttr_s" in out and "load:p50_ms" in out and "REGRESSED" not in out

    assert main(["compare", "reports/slow-startup", "--baseline", "reports/base"]) == 1
    captured = capsys.readouterr()
    table = {line.split()[0]: line for line in captured.out.splitlines() if line.startswith(("chaos/", "load:"))}
    for metric in ("ttr_s", "outage_s", "unavailability_s", "failed_fraction"):
        assert "REGRESSED" in table[f"chaos/pod-kill/single:{metric}"], table
    assert "REGRESSED" not in table["load:p50_ms"]
    assert "regression(s) beyond run-to-run noise" in captured.err


def test_interleaved_runs_are_compared_paired_and_json_is_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5)
    drift = np.linspace(1.0, 1.3, 5)  # the machine got 30% slower during the session: pairs cancel it
    base = 60.0 * drift * rng.lognormal(0.0, 0.01, size=5)
    session = {"session": "abc123", "order": "ABBA", "pairs": 5}
    write_load_rounds(Path("ab/a"), base, interleave={**session, "arm": "a"})
    write_load_rounds(Path("ab/b"), base * 1.10 * rng.lognormal(0.0, 0.01, size=5), interleave={**session, "arm": "b"})
    assert main(["compare", "ab/b", "--baseline", "ab/a", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    p50 = next(row for row in result["rows"] if row["metric"] == "load:p50_ms")
    assert p50["verdict"] == "regressed" and p50["test"] == "paired t on log-ratios"
    assert p50["change"] == pytest.approx(0.10, abs=0.03)
    assert not any(row["metric"].endswith("throughput_rps") for row in result["rows"])  # open loop: the offered rate
    assert "Holm" in result["rule"]

    write_load_rounds(Path("ab/c"), base * 1.10, interleave={**session, "session": "other", "arm": "b"})
    unpaired = compare_runs("ab/c", "ab/a")  # another session: unpaired, and the drift drowns the change
    row = next(r for r in unpaired["rows"] if r["metric"] == "load:p50_ms")
    assert row["test"].startswith("Welch") and row["verdict"] == "inconclusive" and not unpaired["regressions"]


def test_single_runs_and_sweeps_are_inconclusive_and_never_fail(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, latency in (("a", 60.0), ("b", 90.0)):
        write_json(Path(name) / "load" / "result.json", {"kind": "load", "p50_ms": latency, "p99_ms": latency * 2,
                                                         "throughput_rps": 30.0})
        (Path(name) / "sweep").mkdir(parents=True)
        (Path(name) / "sweep" / "sweep.csv").write_text(
            "precision,max_batch_size,load_level,repeat,throughput_rps,p99_ms,status\n"
            + "".join(f"fp32,8,50,{r},50,{latency + r},ok\n" for r in range(3)), encoding="utf-8")
    assert main(["compare", "b", "--baseline", "a"]) == 0
    out = capsys.readouterr().out
    assert "INCONCLUSIVE" in out and "harness load --rounds 5" in out and "windows inside one run" in out
    assert "REGRESSED" not in out and "not a failure" in out


def test_history_runs_widen_the_noise(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_build(Path("base"), seed=1)
    write_build(Path("now"), seed=2, slowdown=1.07)
    assert main(["compare", "now", "--baseline", "base"]) == 1  # tight rounds: +7% is beyond their noise
    capsys.readouterr()
    for index, level in enumerate((0.9, 1.1, 1.0)):  # the same build, measured on other days
        write_build(Path(f"history/{index}"), seed=10 + index, slowdown=level)
    assert main(["compare", "now", "--baseline", "base", "--history", "history/0", "history/1", "history/2"]) == 0
    assert "noise widened by 3 history run(s)" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "named"), [
    (["compare", "missing", "--baseline", "."], "DIR"),
    (["compare", ".", "--baseline", ".", "--alpha", "2"], "--alpha"),
    (["compare", ".", "--baseline", ".", "--min-change", "-0.1"], "--min-change"),
    (["compare", ".", "--baseline", ".", "--history", "nope"], "--history"),
])
def test_bad_arguments_exit_2_naming_them(tmp_path, monkeypatch, capsys, argv, named):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert named in capsys.readouterr().err


def test_a_load_field_unset_in_one_run_and_absent_from_the_other_is_the_same_shape(tmp_path):
    # a baseline saved before the load profile gained "protocol" has no such key; a newer run has it unset
    write_build(tmp_path / "base", seed=1)
    write_build(tmp_path / "new", seed=2)
    result = json.loads((tmp_path / "new" / "load" / "result.json").read_text())
    write_json(tmp_path / "new" / "load" / "result.json", {**result, "profile": {**result["profile"], "protocol": None}})
    assert not [w for w in compare_runs(tmp_path / "new", tmp_path / "base")["warnings"] if "shapes differ" in w]
    # a field that is set differently still warns
    write_json(tmp_path / "new" / "load" / "result.json", {**result, "profile": {**result["profile"], "rate_rps": 9.0}})
    assert [w for w in compare_runs(tmp_path / "new", tmp_path / "base")["warnings"] if "shapes differ" in w]
