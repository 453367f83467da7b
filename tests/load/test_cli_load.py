"""`harness load` on the local platform: every profile within its time bound, files written, nothing left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from harness.request_records import ProbeSample, RequestRecord, read_records

DURATION_S = 4
MODEL = "tiny-mlp"  # loads in a moment: the test is about the load run, not the model
RUN_LIMIT_S = 150  # deploy + load + teardown, with room for a busy machine


def _marked(marker: str) -> list[psutil.Process]:
    """Processes that inherited the run's marker variable (its deployment, generator and prober)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("HARNESS_TEST_RUN") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _wait_gone(marker: str, timeout_s: float = 15.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    left = _marked(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in _marked(marker) if p.status() != psutil.STATUS_ZOMBIE]
    return left


def _start(out: Path, profile: str, *extra: str) -> tuple[subprocess.Popen, str]:
    marker = uuid.uuid4().hex
    env = dict(os.environ, HARNESS_TEST_RUN=marker)
    argv = [sys.executable, "-m", "harness", "load", "--topology", "single", "--profile", profile,
            "--duration-s", str(DURATION_S), "--users", "4", "--model", MODEL, "--out", str(out), *extra]
    # started in the current directory: a relative ``out`` is relative to it, as a user's is
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), marker


def _finish(proc: subprocess.Popen, marker: str) -> None:
    """Kill a run the test gave up on, and everything it started."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for leftover in _marked(marker):
        try:
            leftover.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["steady", "ramp", "step", "spike", "soak"])
def test_harness_load_runs_each_profile_and_leaves_nothing_running(profile, tmp_path):
    out = tmp_path / "run"
    proc, marker = _start(out, profile)
    began = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=RUN_LIMIT_S)
        elapsed = time.monotonic() - began
        assert proc.returncode == 0, stderr[-3000:]
        assert _wait_gone(marker) == []
    finally:
        _finish(proc, marker)
    assert elapsed < RUN_LIMIT_S
    assert "ready after" in stderr and "done:" in stderr  # progress on stderr
    result = json.loads((out / "result.json").read_text())
    assert result["profile"]["kind"] == profile and result["topology"] == "single"
    assert result["requests"] > 0 and result["errors"] == 0
    assert result["throughput_rps"] > 0 and 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert isinstance(result["generator_saturated"], bool)
    assert result["machine"]["logical_cores"] >= 1 and result["machine"]["model"]
    assert result["locust"]["requests"] == result["requests"]
    assert json.loads(stdout)["p99_ms"] == result["p99_ms"]
    assert len(list(read_records(out / "requests.csv", RequestRecord))) == result["requests"]
    assert list(read_records(out / "timeline.csv", ProbeSample))
    assert (out / "telemetry.csv").exists() and (out / "locust_stats.csv").exists()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["type"] and events[-1]["type"] == "Deleted"  # the copy is taken after teardown


@pytest.mark.slow
def test_a_relative_out_holds_every_record_where_the_user_asked(tmp_path, monkeypatch):
    # as the README's `make smoke` does: Locust runs in --out, and a relative path once put its records
    # in rel/dir/rel/dir/ while the run read 0 requests and still "completed"
    monkeypatch.chdir(tmp_path)
    proc, marker = _start(Path("rel/dir"), "steady")
    try:
        _, stderr = proc.communicate(timeout=RUN_LIMIT_S)
        assert proc.returncode == 0, stderr[-3000:]
    finally:
        _finish(proc, marker)
    out = tmp_path / "rel" / "dir"
    result = json.loads((out / "result.json").read_text())
    assert result["requests"] > 0
    assert len(list(read_records(out / "requests.csv", RequestRecord))) == result["requests"]
    assert (out / "timeline.csv").exists() and (out / "locust_stats.csv").exists()
    assert not (out / "rel").exists()


@pytest.mark.slow
def test_sigint_mid_run_tears_everything_down(tmp_path):
    out = tmp_path / "run"
    proc, marker = _start(out, "steady")
    try:
        deadline = time.monotonic() + RUN_LIMIT_S
        while not (out / "requests.csv").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)  # wait until load flows
        assert (out / "requests.csv").exists()
        # the marker reaches what the run started: the CLI, replica, balancer, Locust, prober
        assert len(_marked(marker)) >= 5
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr[-3000:]
        assert "tearing down" in stderr
        assert _wait_gone(marker) == []
    finally:
        _finish(proc, marker)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--duration-s", "-1"], "duration_s"),
        (["--duration-s", "5", "--users", "0"], "users"),
        (["--duration-s", "5", "--model", "no-such-model"], "model"),
        (["--duration-s", "5", "--load-workers", "65"], "--load-workers"),
    ],
)
def test_bad_options_exit_2_naming_the_field_before_deploying(args, named, tmp_path, capsys):
    from harness.cli import main

    code = main(["load", "--topology", "single", "--out", str(tmp_path / "run"), *args])
    assert code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run" / "platform").exists()  # nothing was deployed
