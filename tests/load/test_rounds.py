"""Load runs in rounds: the round loop, the ABBA interleave, the summary, and `harness load --rounds/--rate-rps`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.config import load_spec
from harness.errors import ConfigError
from harness.load import interleave as interleave_module
from harness.load import rounds as rounds_module
from harness.load.interleave import interleave_schedule, run_interleaved
from harness.load.rounds import Arm, parse_fault_params, run_rounds, summarize_rounds
from harness.cpus import CpuPlan
from harness.load.session import RateLoad


class _FakeDeployment:
    def __init__(self, workdir: Path, log: list[str]) -> None:
        self.workdir, self.log = workdir, log
        self.endpoint, self.fault_token = "http://127.0.0.1:1", "token"
        self.events_path = workdir / "events.jsonl"

    def wait_ready(self, timeout_s: float) -> None:
        self.log.append(f"ready {self.workdir.parent.name}")

    def replicas(self) -> list[Any]:
        return [type("Replica", (), {"url": "http://127.0.0.1:2"})()]

    def close(self) -> None:
        self.log.append(f"close {self.workdir.parent.name}")


@pytest.fixture
def fake_platform(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Deployments, injections and sessions recorded in a log instead of run (no process started)."""
    log: list[str] = []
    p50 = iter(range(100, 200))

    def deploy(spec: Any, *, platform: str, workdir: Path, cpus: Any) -> _FakeDeployment:
        return _FakeDeployment(workdir, log)

    def session(deployment: Any, load: Any, out: Path, **options: Any) -> dict[str, Any]:
        log.append(f"measure {out.parent.name}/{out.name}")
        result = {"p50_ms": float(next(p50)), "p99_ms": 300.0, "throughput_rps": 8.0, "requests": 16, "errors": 0,
                  "ok": 16, "started_s": 1.0, "load_mode": "rate", "profile": load.model_dump(), **options["metadata"]}
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result), encoding="utf-8")
        return result

    monkeypatch.setattr("harness.platforms.deploy", deploy)
    monkeypatch.setattr(rounds_module, "run_session", session)
    monkeypatch.setattr(interleave_module, "run_session", session)
    monkeypatch.setattr("harness.service.client.inject_fault",
                        lambda url, kind, token, params: log.append(f"inject {kind} {params['factor']}"))
    return log


def test_interleave_alternates_which_build_goes_first():
    assert interleave_schedule(3) == [(1, "a"), (1, "b"), (2, "b"), (2, "a"), (3, "a"), (3, "b")]
    with pytest.raises(ConfigError, match="rounds"):
        interleave_schedule(0)


def test_summary_is_the_median_over_rounds_with_each_round_listed():
    results = [{"p50_ms": p, "p99_ms": p * 2, "throughput_rps": 10.0, "requests": 20, "errors": e, "ok": 20 - e,
                "round": {"index": i, "pair": i, "position": 2 * i - 1}, "topology": "single"}
               for i, (p, e) in enumerate(((60.0, 0), (90.0, 1), (61.0, 0)), start=1)]
    summary = summarize_rounds(results)
    assert summary["p50_ms"] == 61.0 and summary["p99_ms"] == 122.0  # medians, not means: one slow round
    assert summary["requests"] == 60 and summary["errors"] == 1 and summary["round_count"] == 3
    assert [r["dir"] for r in summary["rounds"]] == ["round-01", "round-02", "round-03"]
    assert summary["rounds"][1]["pair"] == 2 and summary["topology"] == "single"


def test_fault_params_parse_numbers_and_name_a_bad_pair():
    assert parse_fault_params(["factor=1.1", "delay_ms=30", "probe=ready"]) == {"factor": 1.1, "delay_ms": 30,
                                                                                "probe": "ready"}
    with pytest.raises(ConfigError, match="--fault-param-b"):
        parse_fault_params(["factor"], "--fault-param-b")


def test_an_arm_refuses_a_fault_the_service_would_refuse_before_deploying():
    spec = load_spec(None)
    with pytest.raises(ConfigError, match="factor=0.5"):
        Arm("b", spec, "slow-inference", {"factor": 0.5}).validate()
    with pytest.raises(ConfigError, match="needs a fault kind"):
        Arm("b", spec, None, {"factor": 1.1}).validate()
    Arm("b", spec, "slow-inference", {"factor": 1.1}).validate()


def test_rounds_are_fresh_deployments_written_to_round_directories(tmp_path, fake_platform):
    load = RateLoad(8.0, 2.0, request_rows=32)
    summary = run_rounds(Arm("load", load_spec(None)), load, tmp_path / "run", rounds=3, cpus=CpuPlan(None, None))
    measures = [entry for entry in fake_platform if entry.startswith("measure")]
    assert measures == ["measure run/round-01", "measure run/round-02", "measure run/round-03"]
    for index in (1, 2, 3):  # torn down (in the background) after its measurement, before the next one
        closed = fake_platform.index(f"close round-0{index}")
        assert fake_platform.index(f"measure run/round-0{index}") < closed
        assert index == 3 or closed < fake_platform.index(f"measure run/round-0{index + 1}")
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text())
    assert on_disk == summary and summary["p50_ms"] == 101.0 and summary["completed"] is True
    assert summary["profile"]["request_rows"] == 32 and summary["load_mode"] == "rate"


def test_one_round_is_written_flat_as_harness_load_always_did(tmp_path, fake_platform):
    result = run_rounds(Arm("load", load_spec(None)), RateLoad(8.0, 2.0), tmp_path / "run", rounds=1)
    assert fake_platform == ["ready run", f"measure {tmp_path.name}/run", "close run"]
    assert "rounds" not in result and "round" not in result
    assert not (tmp_path / "run" / "round-01").exists() and (tmp_path / "run" / "result.json").exists()


def test_interleaved_session_runs_abba_and_marks_pairs(tmp_path, fake_platform):
    spec = load_spec(None)
    a, b = run_interleaved(Arm("a", spec), Arm("b", spec, "slow-inference", {"factor": 1.1}), RateLoad(8.0, 2.0),
                           tmp_path / "ab", pairs=2)
    measured = [entry.split()[1] for entry in fake_platform if entry.startswith("measure")]
    assert measured == ["a/round-01", "b/round-01", "b/round-02", "a/round-02"]
    assert fake_platform.count("inject slow-inference 1.1") == 2  # B only, every B round
    assert a["interleave"]["session"] == b["interleave"]["session"] and b["interleave"]["arm"] == "b"
    assert [(r["pair"], r["position"]) for r in b["rounds"]] == [(1, 2), (2, 3)]
    round_file = json.loads((tmp_path / "ab" / "b" / "round-02" / "result.json").read_text())
    assert round_file["round"] == {"index": 2, "pair": 2, "position": 3, "session": a["interleave"]["session"],
                                   "arm": "b", "deploy": "round"}


@pytest.mark.parametrize(("extra", "named"), [
    (["--rate-rps", "5", "--users", "4"], "--users"),
    (["--rate-rps", "5", "--profile", "ramp"], "--profile"),
    (["--rate-rps", "0"], "--rate-rps"),
    (["--rounds", "0"], "--rounds"),
    (["--inject-fault", "slow-inference", "--fault-param", "factor=0.5"], "factor=0.5"),
    (["--fault-param", "factor=1.1"], "needs a fault kind"),
])
def test_bad_round_and_rate_options_exit_2_before_deploying(tmp_path, capsys, extra, named):
    from harness.cli import main

    code = main(["load", "--duration-s", "2", "--model", "tiny-mlp", "--out", str(tmp_path / "run"), *extra])
    assert code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run" / "platform").exists() and not (tmp_path / "run" / "round-01").exists()


@pytest.mark.slow
def test_harness_load_in_open_loop_rounds_with_a_relative_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [sys.executable, "-m", "harness", "load", "--rounds", "2", "--rate-rps", "20", "--duration-s", "1",
            "--warmup-s", "0.2", "--model", "tiny-mlp", "--no-prober", "--out", "rel/run"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "rel" / "run"
    result = json.loads((out / "result.json").read_text())
    assert result["round_count"] == 2 and result["load_mode"] == "rate" and result["offered_rate_rps"] == 20.0
    for row in result["rounds"]:
        part = json.loads((out / row["dir"] / "result.json").read_text())
        assert part["requests"] == row["requests"] >= 15 and part["round"]["index"] == row["round"]
        assert (out / row["dir"] / "requests.csv").exists() and (out / row["dir"] / "events.jsonl").exists()
    assert (out / "run.json").exists() and json.loads(done.stdout)["p50_ms"] == result["p50_ms"]
