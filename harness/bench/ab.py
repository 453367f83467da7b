"""Interleaved A/B: both builds measured in alternating rounds on fresh deployments, then compared paired.

`run_ab` measures ``pairs`` pairs of rounds in the order A B, B A, A B, ... (`harness.load.interleave`
explains why ABBA), writes ``out/a`` and ``out/b`` as load runs with rounds (each with its run.json),
compares b against a (`harness.report.compare.compare_runs`: the paired rule of
`harness.measure.regression`) and writes ``out/comparison.json``.

The sign-off load shape (`signoff_load`, `signoff_spec`) is chosen so that the answer is about the
build, not the batching window: open-loop requests at a rate far below the knee (each request alone
in the service, no queue), each carrying ``SIGNOFF_REQUEST_ROWS`` samples so that a request is one
full batch and the forward pass dominates its latency, and a small ``max_queue_delay_ms`` so no
request waits for companions. Under closed-loop users against the default 50 ms window, latency is
set by when the window closes (p50 flips between ~100 and ~200 ms) and a slower forward pass hardly
shows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from harness.cpus import CpuPlan, plan_cpus
from harness.load.interleave import run_interleaved
from harness.load.rounds import Arm
from harness.load.session import RateLoad

__all__ = [
    "SIGNOFF_RATE_RPS",
    "SIGNOFF_REQUEST_ROWS",
    "SIGNOFF_QUEUE_DELAY_MS",
    "COMPARISON_FILE",
    "signoff_spec",
    "signoff_load",
    "run_ab",
]

# ranker-mlp answers a 32-sample request in ~60 ms on one core, so the knee is ~16 req/s; at 8 req/s the
# requests, evenly spaced 125 ms apart, never overlap: no queue, no batching, latency = the build's work
SIGNOFF_RATE_RPS = 8.0
SIGNOFF_REQUEST_ROWS = 32  # one full batch (max_batch_size 32) per request: no batching window at all
SIGNOFF_QUEUE_DELAY_MS = 2.0
SIGNOFF_READINESS_PERIOD_S = 0.2  # a round is Ready as soon as the model is: rounds are many and short
# Replicas of each build in a sign-off deployment. Two processes of one build differ by ~2.5% (sd) in
# latency on this machine (memory and cache placement; measured: the mean log-ratio of A/A sessions
# with one replica each ranged -4% to +4.5%, consistent within a session). The balancer spreads
# consecutive requests round-robin over the replicas, so each build's figure averages 2 processes and
# that bias shrinks by sqrt(2). More is worse here: with 4 per build (8 processes on 2 cores) each
# request found its process's weights out of cache and the per-pair spread grew to 13% (pilot of 4
# sessions, load average 2-3.6).
SIGNOFF_REPLICAS = 2
COMPARISON_FILE = "comparison.json"

Progress = Callable[[str], None]


def signoff_spec(spec: Any, model: str | None = None, replicas: int = SIGNOFF_REPLICAS) -> Any:
    """Return ``spec`` (with ``model`` when given) set up for sign-off rounds: small max_queue_delay_ms,
    one torch thread, a quick readiness probe and a short grace period (rounds deploy and tear down
    many times), ``replicas`` replicas (multi-active when more than one). Raises ConfigError for an
    unknown model."""
    from harness.config import ServiceSpec
    from harness.validation import validate_model

    data = spec.model_dump(by_alias=True, mode="json")
    if model is not None:
        data["service"]["model"] = model
    data["topology"], data["replicas"] = ("multi-active", replicas) if replicas > 1 else ("single", 1)
    data["service"].update({"max_queue_delay_ms": SIGNOFF_QUEUE_DELAY_MS, "torch_threads": 1, "grace_period_s": 1.0})
    data["probes"]["readiness"]["periodSeconds"] = SIGNOFF_READINESS_PERIOD_S
    return validate_model(ServiceSpec, data, source="sign-off spec")


def signoff_load(duration_s: float, model: str, rate_rps: float = SIGNOFF_RATE_RPS,
                 request_rows: int = SIGNOFF_REQUEST_ROWS) -> RateLoad:
    """Return the sign-off load: open-loop, evenly spaced, ``request_rows`` samples a request."""
    return RateLoad(rate_rps, duration_s, model=model, request_rows=request_rows)


def _record(out: Path, result: dict[str, Any], arm: Arm, platform: str, command: list[str]) -> None:
    """Write the arm's run.json (environment fingerprint, spec, load, injected fault, headline figures)."""
    from harness.results import ARTIFACT_FILES, new_run_record, save_run

    record = new_run_record("load", command=command, profile=str((result.get("profile") or {}).get("kind")),
                            platform=platform, topology=arm.spec.topology,
                            config={"spec": arm.spec.model_dump(by_alias=True, mode="json"),
                                    "profile": result.get("profile"), "injected_fault": result.get("injected_fault"),
                                    "interleave": result.get("interleave")})
    record.add_artifact("result", ARTIFACT_FILES["result"])
    record.summary = {k: result.get(k) for k in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors",
                                                 "generator_saturated", "round_count")}
    record.finish("completed" if result.get("completed") else "failed")
    save_run(out, record)


def run_ab(
    a: Arm, b: Arm, load: Any, out_dir: str | Path, *, pairs: int, rules: Any = None, platform: str = "local",
    cpus: CpuPlan | None = None, warmup_s: float = 1.0, telemetry: bool = True, progress: Progress | None = None,
    command: list[str] | None = None, deploy: str = "requests",
) -> dict[str, Any]:
    """Measure ``pairs`` interleaved pairs of arms ``a`` and ``b``, compare b against a paired; return
    ``{"a": result, "b": result, "comparison": ...}`` (also written to ``out_dir/comparison.json``).
    ``deploy``: "requests" (each build deployed once; each pair one open-loop run alternating its
    requests between A and B), "session" (short rounds alternating) or "round" (a fresh deployment per
    round); see `harness.load.interleave`.

    Raises ConfigError for bad settings before deploying anything, HarnessError when a round fails.
    """
    from harness.measure.regression import Rules
    from harness.paths import resolve_path
    from harness.report.compare import compare_runs

    out = resolve_path(out_dir, "out_dir")
    plan = cpus if cpus is not None else plan_cpus()
    metadata = {"topology": a.spec.topology, "replicas": a.spec.replica_count, "platform": platform,
                "model": a.spec.service.model, "cpu_plan": plan.to_dict()}
    results = run_interleaved(a, b, load, out, pairs=pairs, platform=platform, cpus=plan, warmup_s=warmup_s,
                              telemetry=telemetry, metadata=metadata, progress=progress, deploy=deploy)
    for name, arm, result in zip(("a", "b"), (a, b), results):
        _record(out / name, result, arm, platform, command or ["harness", *sys.argv[1:]])
    comparison = compare_runs(out / "b", out / "a", rules or Rules())
    (out / COMPARISON_FILE).write_text(json.dumps(comparison, indent=2, default=str) + "\n", encoding="utf-8")
    return {"a": results[0], "b": results[1], "comparison": comparison}
