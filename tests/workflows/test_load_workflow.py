"""`harness.workflows.load.run_load`: one home for the load workflow, its record and its events.

The generator is replaced (no process starts): these check what the workflow composes, the record it
writes (a run of its own, or a part of a parent run) and the events it keeps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.config import load_spec
from harness.errors import ConfigError
from harness.cpus import CpuPlan
from harness.load.session import RateLoad
from harness.results import load_run, new_run_record
from harness.workflows.context import RunContext
from harness.workflows.load import SUMMARY_KEYS, LoadSettings, run_load


class _Deployment:
    def __init__(self, workdir: Path) -> None:
        self.endpoint = "http://127.0.0.1:1"
        self.events_path = workdir / "events.jsonl"
        workdir.mkdir(parents=True, exist_ok=True)
        self.events_path.write_text('{"type": "Ready"}\n', encoding="utf-8")
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _session(calls: list[dict[str, Any]]):
    def session(deployment: Any, load: Any, out: Path, **options: Any) -> dict[str, Any]:
        calls.append({"deployment": deployment, "out": out, **options})
        out.mkdir(parents=True, exist_ok=True)
        (out / "requests.csv").write_text("sent_s\n", encoding="utf-8")
        result = {"requests": 40, "ok": 40, "errors": 0, "throughput_rps": 8.0, "p50_ms": 10.0, "p95_ms": 20.0,
                  "p99_ms": 30.0, "generator_saturated": False, "profile": load.model_dump(), **options["metadata"]}
        (out / "result.json").write_text(json.dumps(result), encoding="utf-8")
        return result
    return session


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    recorded: list[dict[str, Any]] = []
    monkeypatch.setattr("harness.load.session.run_session", _session(recorded))
    return recorded


def test_a_given_deployment_is_measured_once_its_events_kept_and_the_part_recorded(tmp_path, calls):
    parent = new_run_record("run", command=["harness", "run", "smoke"], inspect_torch=False, preset="smoke",
                            platform="local")
    deployment = _Deployment(tmp_path / "platform")
    settings = LoadSettings(load=RateLoad(8.0, 5.0), cpus=CpuPlan(None, (1,)), telemetry=False)
    run = run_load(settings, RunContext(tmp_path / "load", spec=load_spec(None), parent=parent), deployment=deployment)
    assert len(calls) == 1 and calls[0]["deployment"] is deployment and calls[0]["generator_cpus"] == (1,)
    assert calls[0]["telemetry"] is False and calls[0]["metadata"]["cpu_plan"] == {"service": None, "generator": [1]}
    assert not deployment.closed  # whoever deployed it tears it down
    assert (run.out_dir / "events.jsonl").read_text() == '{"type": "Ready"}\n'
    record = load_run(run.out_dir)
    assert record.run_id == f"{parent.run_id}-load" and record.kind == "load" and record.status == "completed"
    assert record.environment == parent.environment and record.command == parent.command
    assert record.preset == "smoke" and record.profile is None  # the job's preset; no load profile was named
    assert set(record.artifacts) == {"result", "requests", "events"}
    assert record.summary == {**{key: run.result.get(key) for key in SUMMARY_KEYS}, "verdict": run.verdict.to_dict()}


def test_without_a_deployment_each_round_deploys_and_the_run_is_its_own(tmp_path, monkeypatch):
    seen: dict[str, Any] = {}

    def rounds(arm: Any, load: Any, out: Path, **options: Any) -> dict[str, Any]:
        seen.update(arm=arm, **options)
        out.mkdir(parents=True, exist_ok=True)
        return {"requests": 3, "p99_ms": 12.0, "profile": load.model_dump(), "injected_fault": {"kind": arm.fault}}

    monkeypatch.setattr("harness.load.rounds.run_rounds", rounds)
    settings = LoadSettings(load=RateLoad(8.0, 5.0), rounds=3, warmup_s=1.0, fault="slow-inference",
                            fault_params={"factor": 1.1}, profile="steady", command=["harness", "load"])
    run = run_load(settings, RunContext(tmp_path / "out", spec=load_spec(None)))
    assert seen["rounds"] == 3 and seen["warmup_s"] == 1.0 and seen["arm"].fault_params == {"factor": 1.1}
    record = load_run(run.out_dir)
    assert record.command == ["harness", "load"] and record.profile == "steady" and record.parts == {}
    assert record.config["injected_fault"] == {"kind": "slow-inference"} and record.summary["p99_ms"] == 12.0


@pytest.mark.parametrize("field, value", [("rounds", 2), ("fault", "slow-inference"), ("warmup_s", 1.0)])
def test_a_given_deployment_refuses_what_needs_fresh_deployments(tmp_path, calls, field, value):
    settings = LoadSettings(load=RateLoad(8.0, 5.0), **{field: value})
    with pytest.raises(ConfigError, match=field):
        run_load(settings, RunContext(tmp_path / "load", spec=load_spec(None)), deployment=_Deployment(tmp_path / "platform"))
    assert calls == []

