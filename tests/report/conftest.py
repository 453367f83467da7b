"""Saved run data for report and comparison tests, written in the harness's real on-disk formats.

The data are generated from a seed (no live run): a load run, a chaos run with a 2 s outage, a
matrix, a sweep and a capacity check, laid out as `harness run` lays them out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.jsonfile import write_json
from harness.request_records import ProbeSample, RequestRecord, write_records
from harness.results import new_run_record, save_run

T0 = 1_700_000_000.0


def write_load(directory: Path, *, seed: int, latency_ms: float = 20.0, duration_s: float = 20.0, rate_rps: float = 100.0) -> None:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    times = T0 + np.arange(0, duration_s, 1.0 / rate_rps)
    latencies = rng.gamma(8.0, latency_ms / 8.0, size=times.size)
    records = [RequestRecord(float(t), float(t), float(l), 200, True, "", "locust") for t, l in zip(times, latencies)]
    write_records(directory / "requests.csv", records, RequestRecord)
    ok = np.array(latencies)
    write_json(directory / "result.json", {
        "profile": {"kind": "steady", "users": 4, "duration_s": duration_s}, "topology": "single", "throughput_rps": rate_rps,
        "p50_ms": float(np.percentile(ok, 50)), "p95_ms": float(np.percentile(ok, 95)),
        "p99_ms": float(np.percentile(ok, 99)), "errors": 0, "generator_saturated": False,
        "requests": len(records), "ok": len(records),
    })
    write_telemetry(directory, duration_s)


def write_telemetry(directory: Path, duration_s: float) -> None:
    with open(directory / "telemetry.csv", "w", encoding="utf-8") as handle:
        handle.write("time_s,replica,pid,cpu_percent,rss_mb,gpu_index,gpu_util_percent,gpu_memory_used_mb,gpu_power_w,gpu_present\n")
        for second in range(int(duration_s)):
            handle.write(f"{T0 + second},reference-0,100,{50 + second % 7},{400 + second * 0.5},,,,,0\n")


def write_chaos(directory: Path, *, outage_s: float = 2.0, tier: str | None = "single-point", violations=()) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    injected = T0 + 10.0
    samples = []
    for i in range(int(30 / 0.05)):
        t = T0 + i * 0.05
        bad = injected <= t < injected + outage_s
        samples.append(ProbeSample(t, not bad, float("nan") if bad else 12.0 + (i % 5), 0 if bad else 200,
                                   "connection refused" if bad else ""))
    write_records(directory / "timeline.csv", samples, ProbeSample)
    write_records(directory / "requests.csv", [RequestRecord(s.t_s, s.t_s, s.latency_ms, s.status, s.ok, s.error, "locust")
                                               for s in samples], RequestRecord)
    events = [
        {"time_s": injected + 0.01, "mono_s": 1.0, "type": "Exited", "replica": "reference-0", "reason": "Error",
         "message": "killed by SIGKILL", "exit_code": 137},
        {"time_s": injected + 0.2, "mono_s": 1.2, "type": "Started", "replica": "reference-0", "reason": "", "message": "",
         "exit_code": None},
        {"time_s": injected + outage_s, "mono_s": 3.0, "type": "Ready", "replica": "reference-0", "reason": "",
         "message": "", "exit_code": None},
    ]
    import json

    write_telemetry(directory, 30.0)
    (directory / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n", encoding="utf-8")
    write_json(directory / "result.json", {
        "experiment": "pod-kill", "fault": "pod-kill", "topology": "single", "injected_at": injected,
        "injected_at_s": injected, "recovered_at_s": injected + outage_s, "ttr_s": outage_s, "outage_s": outage_s,
        "failed_requests": int(outage_s / 0.05), "total_requests": len(samples),
        "availability": 1 - outage_s / 30.0, "p99_ms_before": 16.0, "p99_ms_during": None, "p99_ms_after": 16.0,
        "tier": "single-point", "tier_met": tier is not None, "highest_tier_met": tier, "violations": list(violations), "journal_status": "completed", "aborted": False,
        "slo_latency_ms": 500.0,
    })


def write_sweep(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["precision,max_batch_size,load_level,repeat,throughput_rps,p50_ms,p99_ms,status,reason"]
    for precision, speed in (("fp32", 1.0), ("bf16", 1.4), ("fp16", None)):
        for batch in (1, 32):
            for level in (100, 400):
                for repeat in range(3):
                    if speed is None:
                        lines.append(f"{precision},{batch},{level},{repeat},,,,timeout,fp16 forward too slow on this CPU")
                        continue
                    cap = (150 if batch == 1 else 900) * speed
                    tput = min(level, cap) * (1 + 0.01 * repeat)
                    p99 = 20 + (400 if level > cap else 0) + repeat
                    lines.append(f"{precision},{batch},{level},{repeat},{tput},{p99 / 2},{p99},ok,")
    (directory / "sweep.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(directory / "sweep_summary.json", {
        "slo": {"p99_ms": 200.0, "max_error_rate": 0.01},
        "effects": {"batching": [{"precision": "fp32", "load_level": 400, "speedup": 2.67}]},
        "accuracy": [{"precision": "bf16", "max_abs_error": 0.01, "mean_abs_error": 0.002}],
    })


def write_capacity(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "capacity.json", {
        "plan": {"target_rps": 2000.0, "p99_ms": 500.0, "headroom": 0.3, "per_replica_rps": 400.0,
                 "required_rps": 2600.0, "replicas": 7, "assumption": "throughput scales linearly with replicas"},
        "allowed_replicas": 2, "planned_fits": False,
        "points": [{"replicas": 1, "predicted_rps": 400.0, "measured_rps": 400.0, "ratio": 1.0, "search": {}},
                   {"replicas": 2, "predicted_rps": 800.0, "measured_rps": 700.0, "ratio": 0.875, "search": {}}],
        "worst_ratio": 0.875, "linear_model_error": 0.125, "note": "2 cores: at most 2 replicas measured",
    })


def write_run(root: Path, *, seed: int = 1, latency_ms: float = 20.0, failing_chaos: bool = False) -> Path:
    record = new_run_record("run", command=["harness", "run", "smoke"], inspect_torch=False, profile="smoke")
    write_load(root / "load", seed=seed, latency_ms=latency_ms)
    if failing_chaos:
        write_chaos(root / "chaos" / "pod-kill-single", outage_s=6.0, tier=None,
                    violations=["availability 80.000% is below the single-point tier's 99.0%",
                                "p99 inference latency 812 ms is over 500 ms"])
    else:
        write_chaos(root / "chaos" / "pod-kill-single")
    (root / "chaos").mkdir(parents=True, exist_ok=True)
    (root / "chaos" / "matrix.csv").write_text(
        "fault,topology,ttr_s,availability,failed_requests,tier,tier_met\n"
        f"pod-kill,single,2.0,0.9333,40,single-point,{'false' if failing_chaos else 'true'}\n"
        "pod-kill,multi-active,0.0,1.0,0,multi-active,true\n", encoding="utf-8")
    write_sweep(root / "sweep")
    write_capacity(root / "capacity")
    record.parts = {"load": "load", "chaos": "chaos", "sweep": "sweep", "capacity": "capacity"}
    record.finish("completed")
    save_run(root, record)
    return root


@pytest.fixture
def saved_run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")
