"""`harness sweep` and `harness capacity` end to end on the local platform (tiny model, short, bounded)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.cli import main
from harness.sweep.grid import read_sweep_csv


def test_bad_flags_exit_2_naming_the_field(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path), "--batch-sizes", "1,x"]) == 2
    assert "--batch-sizes='1,x'" in capsys.readouterr().err
    for flag in ("--preset", "--profile"):  # --profile: its former name
        assert main(["sweep", "--out", str(tmp_path), flag, "weekly"]) == 2
        assert "preset='weekly'" in capsys.readouterr().err
    assert main(["capacity", "--target-rps", "-1", "--p99-ms", "500", "--out", str(tmp_path)]) == 2
    assert "target_rps=-1.0" in capsys.readouterr().err
    assert main(["capacity", "--target-rps", "10", "--p99-ms", "500", "--headroom", "10", "--out", str(tmp_path)]) == 2
    assert "headroom=10.0" in capsys.readouterr().err


def _pids_in_state(out: Path) -> set[int]:
    pids = set()
    for state in out.glob("deployments/*/state.json"):
        data = json.loads(state.read_text())
        pids |= {r["pid"] for r in data.get("replicas", []) if r.get("pid")}
        if data.get("balancer", {}).get("pid"):
            pids.add(data["balancer"]["pid"])
    return pids


def _gone(pids: set[int], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.perf
def test_sweep_end_to_end_writes_rows_summary_and_run_record(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--model", "tiny-mlp", "--precisions", "fp32,bf16", "--batch-sizes", "4",
                 "--load-levels", "20", "--warmup-s", "0.5", "--window-s", "1", "--min-windows", "2",
                 "--max-windows", "2", "--point-budget-s", "20", "--max-queue-delay-ms", "5", "--no-search",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = list(read_sweep_csv(out / "sweep.csv"))
    assert {r["precision"] for r in rows} == {"fp32", "bf16"}
    measured = [r for r in rows if r["status"] == "ok"]
    assert measured and all(r["requests"] > 0 and r["throughput_rps"] > 0 for r in measured)
    assert all(r["p50_ms"] <= r["p99_ms"] for r in measured)
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["interrupted"] is False and len(summary["points"]) == 2
    assert {a["precision"] for a in summary["accuracy"]} == {"fp32", "bf16"}
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "sweep" and run["status"] == "completed" and run["artifacts"]["sweep"] == "sweep.csv"
    assert "[2/2]" in captured.err and "ETA" in captured.err
    assert "throughput_rps" in captured.out
    assert _gone(_pids_in_state(out))


@pytest.mark.slow
@pytest.mark.perf
def test_concurrency_sweep_with_a_search_end_to_end(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--model", "tiny-mlp", "--precisions", "fp32", "--batch-sizes", "4", "--load-mode", "concurrency",
                 "--load-levels", "1,4", "--warmup-s", "0.5", "--window-s", "1", "--min-windows", "2", "--max-windows", "2",
                 "--point-budget-s", "20", "--max-queue-delay-ms", "5", "--search", "--search-budget-s", "12",
                 "--no-accuracy", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = list(read_sweep_csv(out / "sweep.csv"))
    assert {r["load_level"] for r in rows} == {1.0, 4.0} and {r["load_mode"] for r in rows} == {"concurrency"}
    measured = [r for r in rows if r["status"] == "ok"]
    assert measured and all(r["requests"] > 0 and r["throughput_rps"] > 0 and r["p50_ms"] <= r["p99_ms"] for r in measured)
    summary = json.loads((out / "sweep_summary.json").read_text())
    search = summary["searches"]["fp32/4"]
    assert search["probe_count"] >= 1 and search["probes"][0]["rate_rps"] > 0  # the knee is searched in req/s
    (config,) = summary["configurations"]
    assert config["max_rate"]["source"] == "search" and config["max_rate"]["text"]
    assert "search probe" in captured.err and "max rate under p99" in captured.out
    assert _gone(_pids_in_state(out))


@pytest.mark.slow
@pytest.mark.perf
def test_sigint_keeps_finished_rows_and_tears_down(tmp_path):
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "harness", "sweep", "--model", "tiny-mlp", "--precisions", "fp32,bf16",
               "--batch-sizes", "1,4", "--load-levels", "20", "--warmup-s", "0.5", "--window-s", "1",
               "--min-windows", "2", "--max-windows", "3", "--point-budget-s", "20", "--no-accuracy", "--no-search",
               "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            csv_path = out / "sweep.csv"
            if csv_path.exists() and any(r["status"] == "ok" for r in read_sweep_csv(csv_path)):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        pids = _pids_in_state(out)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    rows = list(read_sweep_csv(out / "sweep.csv"))
    assert any(r["status"] == "ok" for r in rows)
    assert any(r["status"] == "interrupted" for r in rows)
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["interrupted"] is True
    assert json.loads((out / "run.json").read_text())["status"] == "aborted"
    assert pids and _gone(pids | _pids_in_state(out))


@pytest.mark.slow
@pytest.mark.capacity
def test_capacity_end_to_end_plans_and_checks(tmp_path, capsys):
    out = tmp_path / "capacity"
    code = main(["capacity", "--target-rps", "200", "--p99-ms", "500", "--headroom", "0.3", "--max-replicas", "2",
                 "--model", "tiny-mlp", "--batch-size", "4", "--max-queue-delay-ms", "5", "--warmup-s", "0.5",
                 "--window-s", "1", "--search-budget-s", "15", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads((out / "capacity.json").read_text())
    plan = data["plan"]
    assert plan["per_replica_rps"] > 0
    assert plan["per_replica_text"] and (plan["per_replica_converged"] or plan["bound_note"])  # a bound says so
    assert data["config"]["one_replica_measured"] == "directly, as the sweep"
    assert plan["replicas"] >= 1 and "Linear scaling" in plan["assumption"]
    counts = [p["replicas"] for p in data["points"]]
    assert counts == ([1, 2] if len(os.sched_getaffinity(0)) >= 2 else [1])
    for point in data["points"]:
        assert point["predicted_rps"] == pytest.approx(point["replicas"] * plan["per_replica_rps"])
        assert point["ratio"] == pytest.approx(point["measured_rps"] / point["predicted_rps"])
    assert "measured/predicted" in captured.out and "plan:" in captured.out
    assert json.loads((out / "run.json").read_text())["kind"] == "capacity"
    assert _gone(_pids_in_state(out))
