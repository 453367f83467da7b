"""The load workflow: `run_load`, the one home of `harness load`, the main job's load stage and the load scenarios.

`run_load(settings, context)` writes into the run context's output directory (`harness.workflows.context`:
already absolute), then either

- deploys ``context.spec`` on ``context.platform`` for each round, waits until Ready, injects the
  fault into every replica, warms up, measures and tears down (`harness.load.rounds.run_rounds`), or
- measures a Ready ``deployment`` it is given (the main job's deploy stage, a scenario's fixture)
  once (`harness.load.session.run_session`); whoever deployed it tears it down;

- measures a server at ``settings.endpoint`` as it is (``harness load --endpoint``): no deployment,
  telemetry or events, once, as a given deployment;

and in both cases keeps the platform's events beside the results, judges the load against the SLO
(and the SLA tier ``settings.tier``, when named) with the one judgement of a load
(`harness.measure.load_verdict.judge_load`), and writes the run record (``run.json``, kind ``load``,
the SLO and tier in its config, the verdict in its summary): a run of its own, or a part of a
``parent`` run (the main job's, a scenario session's). Flags and printing stay with the CLI, budgets
and what a verdict does to the job with the job, fixtures and expectations with the scenarios.

Files in ``out_dir``: ``result.json`` (throughput, exact p50/p95/p99, errors, generator_saturated;
with ``rounds`` > 1 the medians over rounds, each round in ``round-NN/``), ``requests.csv``,
``timeline.csv`` (the prober), ``telemetry.csv``, Locust's ``locust_*.csv``, ``events.jsonl`` and
``run.json``. A generative load (an OpenAI-compatible protocol: records with token figures) also gets
its exact TTFT / TPOT / ITL percentiles, output tokens per second and goodput under the SLO and
``settings.token_slo`` (`harness.measure.tokens`), as ``tokens`` in result.json and run.json's summary.
A progress callback that takes beats (`harness.load.heartbeat.LoadProgress`) gets the
load's heartbeat as well as the lines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.cpus import CpuPlan
from harness.errors import ConfigError
from harness.load.profiles import LoadProfile
from harness.load.session import RESULT_FILE, Endpoint, RateLoad
from harness.measure.load_verdict import LoadVerdict, judge_saved_load, validate_tier
from harness.request_records import REQUESTS_FILE, RequestRecord, read_records
from harness.results import ARTIFACT_FILES, RunRecord, new_part_record, new_run_record, save_run
from harness.slo import Slo, TokenSlo
from harness.workflows.context import RunContext

__all__ = ["SUMMARY_KEYS", "LoadSettings", "LoadRun", "run_load"]

# the headline figures of a load, in its run.json's summary
SUMMARY_KEYS = ("requests", "errors", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "generator_saturated")
_ARTIFACTS = ("result", "requests", "timeline", "telemetry", "events")


@dataclass(frozen=True)
class LoadSettings:
    """What `run_load` measures and how; the fields mean what the `harness load` flags of their names do.
    Where (the output directory, the platform), what is deployed (the spec) and the SLO the load is
    judged by come with the run's context (`harness.workflows.context.RunContext`)."""

    load: LoadProfile | RateLoad  # Locust users of a profile, or open-loop requests at a rate
    rounds: int = 1  # each a fresh deployment; only without a given deployment
    warmup_s: float = 0.0  # unmeasured open-loop load before each round's measurement
    fault: str | None = None  # a service fault injected into every replica for the whole round
    fault_params: Mapping[str, Any] = field(default_factory=dict)
    cpus: CpuPlan = CpuPlan(None, None)  # where the service and the generator run (None: unpinned)
    prober: bool = True
    prober_interval_s: float = 0.05
    telemetry: bool = True  # sample the replicas' CPU/RSS/GPU (off where the pods are not on this machine)
    tier: str | None = None  # judge against this SLA tier too (its steady state and the telemetry alerts)
    profile: str | None = None  # the load profile's name, recorded in run.json
    command: list[str] | None = None  # recorded in a run of its own (default: this process's argv)
    endpoint: str | None = None  # measure this URL as it is: no deployment, telemetry or events
    token_slo: TokenSlo | None = None  # per-request TTFT / TPOT / e2e bounds of goodput (generative loads)
    load_workers: int = 1  # the load generator's processes (Locust's master and workers, or the rate generator's)

    def metadata(self, context: RunContext) -> dict[str, Any]:
        """Return what result.json says about where the load ran."""
        protocol = self.load.protocol.protocol if self.load.protocol is not None else "oip-v2"
        if self.endpoint is not None:
            return {"endpoint": self.endpoint, "platform": None, "protocol": protocol,
                    "cpu_plan": self.cpus.to_dict()}
        spec = context.require_spec()
        return {"protocol": protocol, "topology": spec.topology, "replicas": spec.replica_count, "platform": context.platform,
                "model": spec.service.model, "cpu_plan": self.cpus.to_dict()}


@dataclass(frozen=True)
class LoadRun:
    """A finished load: its ``result.json`` content, its directory, its run record and its verdict."""

    result: dict[str, Any]
    out_dir: Path
    record: RunRecord
    verdict: LoadVerdict  # against the SLO (and the tier when named); also in run.json's summary


def run_load(settings: LoadSettings, context: RunContext, *, deployment: Any = None) -> LoadRun:
    """Measure ``settings.load`` into ``context.out_dir`` (see the module docstring); return the `LoadRun`.

    ``context`` gives the spec (deployed, or what ``deployment`` runs), the platform, the SLO, the
    progress callback and the parent run. Raises ConfigError for bad settings before anything is
    deployed (no spec; rounds or a fault with a given ``deployment``: those need fresh deployments),
    HarnessError when a deployment, the generator or the prober fails (what this function deployed is
    torn down on every way out).
    """
    from harness.load.rounds import Arm, run_rounds
    from harness.load.session import run_session
    from harness.platforms.base import copy_events

    out, progress = context.out_dir, context.progress  # it may take beats
    spec = context.require_spec() if settings.endpoint is None else context.spec  # an endpoint needs none
    if settings.tier is not None:
        validate_tier(settings.tier)
    started_s = time.time()
    if settings.endpoint is not None:
        if deployment is not None:
            raise ConfigError("endpoint", settings.endpoint, "measure an endpoint or a given deployment, not both")
        deployment = Endpoint(settings.endpoint)
    if deployment is None:
        arm = Arm("load", spec, settings.fault, dict(settings.fault_params))
        result = run_rounds(arm, settings.load, out, rounds=settings.rounds, platform=context.platform,
                            cpus=settings.cpus, warmup_s=settings.warmup_s, prober=settings.prober,
                            prober_interval_s=settings.prober_interval_s, telemetry=settings.telemetry,
                            metadata=settings.metadata(context), progress=progress, load_workers=settings.load_workers)
    else:
        _validate_given_deployment(settings)
        try:
            result = run_session(deployment, settings.load, out, generator_cpus=settings.cpus.generator,
                                 prober=settings.prober, prober_interval_s=settings.prober_interval_s,
                                 telemetry=settings.telemetry and not isinstance(deployment, Endpoint),
                                 metadata=settings.metadata(context), progress=progress,
                                 load_workers=settings.load_workers)
        finally:
            if not isinstance(deployment, Endpoint):
                copy_events(deployment, out)
    result = _with_tokens(out, result, context.slo, settings.token_slo)
    verdict = judge_saved_load(out, result, context.slo, tier=settings.tier)
    return LoadRun(result, out, _record(settings, context, result, verdict, started_s), verdict)


def _with_tokens(out: Path, result: dict[str, Any], slo: Slo, token_slo: TokenSlo | None) -> dict[str, Any]:
    """Return ``result`` with its token figures (``tokens``) when its records carry them, result.json
    rewritten to hold them; ``result`` as it is otherwise (no records file: rounds keep theirs apart)."""
    import json

    from harness.measure.tokens import has_tokens, summarize_tokens

    path = out / REQUESTS_FILE
    records = list(read_records(path, RequestRecord)) if path.exists() else []
    if not has_tokens(records):
        return result
    result = {**result, "tokens": summarize_tokens(records, slo, token_slo).to_dict(),
              "token_definitions": "exact, from requests.csv (harness.measure.tokens; ITL over every gap)"}
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return result


def _validate_given_deployment(settings: LoadSettings) -> None:
    if settings.rounds != 1:
        raise ConfigError("rounds", settings.rounds, "a given deployment is measured once; rounds deploy afresh")
    if settings.fault is not None:
        raise ConfigError("fault", settings.fault, "a fault is injected into a deployment of the load's own")
    if settings.warmup_s:
        raise ConfigError("warmup_s", settings.warmup_s, "warm-up belongs to rounds on deployments of the load's own")


def _record(settings: LoadSettings, context: RunContext, result: Mapping[str, Any], verdict: LoadVerdict,
            started_s: float) -> RunRecord:
    """Write run.json (kind load): the environment fingerprint makes `harness compare` of two load runs
    warn when they ran on different machines."""
    out, parent, external = context.out_dir, context.parent, settings.endpoint is not None
    spec = None if external else context.require_spec()
    fields: dict[str, Any] = {
        "platform": None if external else context.platform, "topology": None if external else spec.topology,
        "config": {"spec": None if external else spec.model_dump(by_alias=True, mode="json"),
                   "endpoint": settings.endpoint, "profile": result.get("profile"),
                   "injected_fault": result.get("injected_fault"), "slo": context.slo.to_dict(), "tier": settings.tier,
                   "token_slo": settings.token_slo.to_dict() if settings.token_slo is not None else None},
    }
    if parent is None:
        record = new_run_record("load", command=settings.command, profile=settings.profile, **fields)
        record.created_s = started_s
    else:
        record = new_part_record(parent, "load", out.name, profile=settings.profile, **fields)
    for name in _ARTIFACTS:
        if (out / ARTIFACT_FILES[name]).exists():
            record.add_artifact(name, ARTIFACT_FILES[name])
    record.summary = {**{key: result.get(key) for key in SUMMARY_KEYS}, "verdict": verdict.to_dict()}
    if "tokens" in result:
        record.summary["tokens"] = result["tokens"]
    record.finish("completed")
    save_run(out, record)
    return record
