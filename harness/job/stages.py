"""The stages of the main job, each a thin call into the module that does the work.

Every stage writes under its own directory of the job's (the report finds the parts by their files):

- preflight: ``preflight.json`` (`harness.preflight`); a failed requirement stops the job;
- deploy: the service spec on the local platform, Ready (`harness.platforms.deploy`), held for load;
  on Kubernetes, the applied Deployment attached to (rolled out, every pod Ready), created by nobody here;
- load: a Locust profile with the prober and telemetry against that deployment
  (`harness.workflows.load.run_load`, as `harness load`) into ``load/``, then the deployment is torn down;
- chaos: the fault x topology matrix (which: `harness.job.chaosplan`; `harness.workflows.matrix.run_matrix`) into ``chaos/``;
- sweep: precision x batch size x rate (`harness.workflows.sweep.run_sweep`, as `harness sweep`) into ``sweep/``;
- capacity: the plan and its check (`harness.workflows.capacity.run_capacity`, as `harness capacity`) into
  ``capacity/``;
- report: ``report.html``, ``report.md``, ``summary.json`` (`harness.report.writer.write_report`),
  with the baseline comparison when one is given (`harness.report.compare.compare_runs`).

On Kubernetes (``ctx.target``) preflight, sweep and capacity are skipped with the reason in
`KUBERNETES_SKIPS`: they check or deploy on this machine, and the in-cluster runner only attaches.
Given a spec of its own on the local platform (``--spec``: a team's server, or ``--endpoint``), deploy,
load and chaos run against that spec (its target's protocol; the preset's ``server_faults``, or for a generative
spec the LLM profile: `harness.job.chaosplan`) and the
sweep and capacity, which deploy the reference service's own configurations, are skipped with the
reason in `OWN_SPEC_SKIPS`.

Heavy modules are imported inside the stage functions (torch, pandas, chaoslib), never here.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError
from harness.job.engine import JobContext, Stage
from harness.job.outcomes import FAIL, PASS, StageOutcome

__all__ = [
    "LOAD_DIR", "CHAOS_DIR", "SWEEP_DIR", "CAPACITY_DIR", "PREFLIGHT_FILE", "KUBERNETES_SKIPS", "OWN_SPEC_SKIPS",
    "own_spec", "preflight_stage", "deploy_stage", "load_stage", "chaos_stage", "sweep_stage", "capacity_stage",
    "report_stage", "default_stages", "run_context", "LineWriter",
]

PREFLIGHT_FILE = "preflight.json"
LOAD_DIR, CHAOS_DIR, SWEEP_DIR, CAPACITY_DIR = "load", "chaos", "sweep", "capacity"

# Stages that do not apply when the job attaches to a Kubernetes Deployment, and why (in the stage table
# and run.json): the runner's Role creates nothing, and these check or deploy on the local machine.
KUBERNETES_SKIPS = {
    "preflight": "checks this machine for the local platform (cgroups, CPUs, ports); on Kubernetes the deploy "
                 "stage checks the cluster instead (API reachable, Deployment rolled out, every pod Ready)",
    "sweep": "a sweep deploys one service per precision x batch size, and on Kubernetes the harness only attaches "
             "to the applied Deployment (its Role creates nothing); run `harness sweep` where it may deploy",
    "capacity": "capacity planning deploys 1..N replicas of its own, and on Kubernetes the harness only attaches "
                "to the applied Deployment; run `harness capacity` where it may deploy",
}

# Stages that do not apply to a spec of the user's own on the local platform (`PlatformTarget.own_spec`), and why.
OWN_SPEC_SKIPS = {
    "sweep": "the precision x batch-size sweep and its accuracy drift deploy the reference service at each precision and "
             "batch size (its own models); a team's server has its own precision and batching: nothing of the spec to sweep",
    "capacity": "capacity planning deploys 1..N replicas of the reference service's configuration, not the given spec; "
                "measure replicas of a team's server with harness chaos or harness load --spec at each replica count",
}


class LineWriter(io.TextIOBase):
    """A text stream that hands each complete line to ``emit`` (to show another command's output as progress)."""

    def __init__(self, emit: Callable[[str], None], fallback: Any = None) -> None:
        self._emit = emit
        self._fallback = fallback if fallback is not None else sys.stderr  # the stream it stands in for
        self._buffer = ""
        self._emitting = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._emitting:  # ``emit`` itself printed to the swapped stream: pass it through, never loop
            return self._fallback.write(text)
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._send(line)
        return len(text)

    def _send(self, line: str) -> None:
        if not line.strip():
            return
        self._emitting = True
        try:
            self._emit(line.rstrip())
        finally:
            self._emitting = False

    def flush(self) -> None:
        if self._emitting:
            self._fallback.flush()
            return
        line, self._buffer = self._buffer, ""
        self._send(line)


def run_context(ctx: JobContext) -> Any:
    """Return the main job's `harness.workflows.context.RunContext` (its directory, platform, SLO, progress
    and record), composed once per job and kept with what the stages share; each stage hands the
    workflow it calls its part of it (`RunContext.part`)."""
    from harness.workflows.context import RunContext

    if "run_context" not in ctx.values:
        ctx.values["run_context"] = RunContext(ctx.out_dir, platform=ctx.target.platform, progress=ctx.say,
                                               parent=ctx.record)
    return ctx.values["run_context"]


def _part_record(ctx: JobContext, kind: str, directory: str, *, status: str, summary: dict[str, Any],
                 config: dict[str, Any] | None = None, topology: str | None = None, reason: str | None = None) -> None:
    """Write ``run.json`` of a part the called module does not record itself (same environment as the job)."""
    from harness.results import new_part_record, save_run

    record = new_part_record(ctx.record, kind, directory, config=config or {}, topology=topology, summary=summary)
    record.finish(status, reason)
    save_run(ctx.out_dir / directory, record)


# ----- preflight ------------------------------------------------------------------------------------

def preflight_stage(ctx: JobContext) -> StageOutcome:
    """Run every preflight check; write preflight.json; verdict FAIL (and stop) when a requirement is not met."""
    from harness.jsonfile import write_json
    from harness.preflight import FAIL as FAILED_CHECK, PASS as PASSED_CHECK, PreflightOptions, findings_to_json, run_preflight

    options = PreflightOptions()
    findings = run_preflight(options)
    write_json(ctx.out_dir / PREFLIGHT_FILE, findings_to_json(findings, options))
    ctx.record.add_artifact("preflight", PREFLIGHT_FILE)
    for finding in findings:
        if finding.status != PASSED_CHECK:
            ctx.say(f"{finding.status}: {finding.name}: {finding.detail}")
    failed = [f"{f.name}: {f.detail}" for f in findings if f.status == FAILED_CHECK]
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.status] = counts.get(finding.status, 0) + 1
    return StageOutcome(verdict=FAIL if failed else PASS, findings=failed, summary={"checks": counts},
                        stop=bool(failed), reason="a requirement is not met" if failed else None)


# ----- deploy and load ------------------------------------------------------------------------------

def _teardown(deployment: Any, out: Path) -> None:
    """Close the deployment, then keep its events beside the load results (as `harness load` does)."""
    from harness.platforms.base import copy_events

    try:
        deployment.close()
    finally:
        copy_events(deployment, out)


def deploy_stage(ctx: JobContext) -> StageOutcome:
    """Deploy the load stage's spec on the local platform and wait until Ready; hold it for the load stage.
    On Kubernetes, attach to the applied Deployment instead (see `_attach_stage`)."""
    import time

    from harness.config import load_spec
    from harness.cpus import plan_cpus
    from harness.platforms import deploy

    if ctx.target.is_kubernetes:
        return _attach_stage(ctx)
    preset = ctx.preset
    spec = own_spec(ctx.target) if ctx.target.own_spec else load_spec(None, topology=preset.load_topology)
    plan = plan_cpus()
    out = ctx.out_dir / LOAD_DIR
    what = f"model {spec.service.model}" if spec.target is None else f"{spec.target_kind} target {spec.name}"
    ctx.say(f"{spec.topology} ({spec.replica_count} replica(s), {what}) on local; "
            f"service CPUs {plan.to_dict()['service']}, generator CPUs {plan.to_dict()['generator']}")
    began = time.monotonic()
    deployment = deploy(spec, platform="local", workdir=out / "platform", cpus=plan.service)
    ctx.hold("deployment", deployment, lambda: _teardown(deployment, out))
    ctx.values.update(spec=spec, cpu_plan=plan)
    deployment.wait_ready(timeout_s=preset.ready_timeout_s)
    ready_s = time.monotonic() - began
    ctx.say(f"ready after {ready_s:.1f} s at {deployment.endpoint}")
    return StageOutcome(summary={"ready_s": round(ready_s, 2), "topology": spec.topology,
                                 "replicas": spec.replica_count, "model": spec.service.model, "target": spec.target_kind})


def own_spec(target: Any) -> Any:
    """Return the spec of the user's own for a local ``target`` (`PlatformTarget`: its ``--spec`` file, with
    ``--endpoint`` as its endpoint target), in its own topology; raise ConfigError for a bad one."""
    from harness.chaos.experiment import merge_spec
    from harness.config import load_spec_data
    from harness.errors import ConfigError

    base = load_spec_data(target.spec_path) if target.spec_path is not None else {}
    try:
        return merge_spec(base, target.spec_overlay())
    except ConfigError as exc:  # name the file the bad field is in
        raise (exc if exc.source or target.spec_path is None else
               ConfigError(exc.field, exc.value, exc.reason, source=str(target.spec_path))) from None


def _attach_stage(ctx: JobContext) -> StageOutcome:
    """Attach to the applied Kubernetes Deployment of the target's spec; hold it for the load stage."""
    import time

    from harness.config import load_spec
    from harness.cpus import CpuPlan
    from harness.platforms import deploy

    target, preset = ctx.target, ctx.preset
    spec = load_spec(target.spec_path)
    out = ctx.out_dir / LOAD_DIR
    theirs = spec.target_kind == "deployment"  # a team's own Deployment: its name, replicas and probes are read from it
    ctx.say("attaching to " + (f"their Deployment ({spec.target.deployment or spec.target.selector})" if theirs else f"{target.namespace}/"
            f"{spec.name} ({spec.topology}, {spec.replica_count} replica(s), model {spec.service.model})") + " on kubernetes")
    began = time.monotonic()
    deployment = deploy(spec, platform="kubernetes", workdir=out / "platform", timeout_s=preset.ready_timeout_s,
                        **target.deploy_options())
    ctx.hold("deployment", deployment, lambda: _teardown(deployment, out))
    ctx.values.update(spec=spec, cpu_plan=CpuPlan(service=None, generator=None))  # the cluster places the pods
    ready_s = time.monotonic() - began
    replicas = getattr(deployment, "replica_count", spec.replica_count)
    ctx.say(f"{target.namespace}/{getattr(deployment, 'name', spec.name)}: {replicas} pod(s) Ready after {ready_s:.1f} s; service at {deployment.endpoint}")
    return StageOutcome(summary={"ready_s": round(ready_s, 2), "topology": spec.topology, "replicas": replicas,
                                 "model": None if theirs else spec.service.model, "target": spec.target_kind,
                                 "namespace": target.namespace, "endpoint": deployment.endpoint})


def load_stage(ctx: JobContext) -> StageOutcome:
    """Run the preset's load against the held deployment (`harness.workflows.load.run_load`), tear it
    down; verdict: the load's against the SLO (`harness.measure.load_verdict.judge_load`, as `harness load`)."""
    from harness.load.profiles import build_profile
    from harness.workflows.load import SUMMARY_KEYS, LoadSettings, run_load

    preset, spec = ctx.preset, ctx.get("spec")
    protocol = spec.target.protocol if spec.target is not None else None  # what a team's server speaks
    load = build_profile(preset.load_kind, preset.load_duration_s, users=preset.load_users, model=spec.service.model,
                         protocol=protocol)
    settings = LoadSettings(load=load, cpus=ctx.get("cpu_plan"),
                            telemetry=not ctx.target.is_kubernetes)  # pods run on other nodes: not ours to sample
    try:
        run = run_load(settings, run_context(ctx).part(LOAD_DIR, spec=spec), deployment=ctx.get("deployment"))
    finally:
        ctx.say("tearing down")
        ctx.release("deployment")
    result, verdict = run.result, run.verdict
    summary = {k: result.get(k) for k in SUMMARY_KEYS}
    ctx.say(f"{result.get('requests') or 0} requests, {result.get('errors') or 0} errors, "
            f"{_number(result.get('throughput_rps'))} req/s, p99 {_number(result.get('p99_ms'))} ms"
            + (" (load generator saturated)" if result.get("generator_saturated") else ""))
    ctx.say(verdict.line())
    return StageOutcome(verdict=PASS if verdict.met else FAIL, findings=[] if verdict.met else list(verdict.reasons),
                        summary=summary, path=LOAD_DIR)


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1f}"


# ----- chaos matrix ---------------------------------------------------------------------------------

def chaos_stage(ctx: JobContext) -> StageOutcome:
    """Run the preset's fault x topology matrix; verdict FAIL listing every cell that missed its tier."""
    from harness.job.chaosplan import chaos_plan
    from harness.workflows.matrix import run_matrix

    # the preset's faults; a team's server: those that need nothing from it; a generative one: the LLM profile
    plan, note = chaos_plan(ctx.preset, ctx.target, ctx.sla, own_spec(ctx.target) if ctx.target.own_spec else None)
    ctx.say(note)
    try:
        table = run_matrix(plan, run_context(ctx).part(CHAOS_DIR))
    except KeyboardInterrupt:  # between two cells (a cell itself records the interrupt and returns)
        _part_record(ctx, "chaos", CHAOS_DIR, status="aborted", summary={"note": note},
                     config={"chaos_preset": plan.preset.name}, reason="interrupted")
        raise
    failed, unsure = table.failed_cells(), table.inconclusive_cells()
    summary = {"cells": len(table.rows), "failed_cells": len(failed), "inconclusive_cells": len(unsure),
               "faults": [e.name for e in plan.experiments], "topologies": list(plan.topologies), "note": note}
    status = "aborted" if table.aborted else "completed"
    _part_record(ctx, "chaos", CHAOS_DIR, status=status, summary=summary, config={"chaos_preset": plan.preset.name},
                 reason="interrupted" if table.aborted else None)
    if not table.rows:
        raise HarnessError("the chaos matrix ran no cell")
    for cell in unsure:
        ctx.say(f"inconclusive (not a failure): {cell}")
    return StageOutcome(verdict=FAIL if failed else PASS, findings=failed, summary=summary, path=CHAOS_DIR,
                        aborted=table.aborted, reason=f"{len(unsure)} inconclusive cell(s): {unsure[0]}" if unsure else None)


# ----- sweep ----------------------------------------------------------------------------------------

def sweep_stage(ctx: JobContext) -> StageOutcome:
    """Run the preset's sweep (`harness.workflows.sweep.run_sweep`, as `harness sweep`); fails when nothing
    could be measured."""
    from harness.sweep.grid import OK, SUMMARY_JSON, SWEEP_CSV, build_plan
    from harness.workflows.sweep import SweepSettings, run_sweep

    preset = ctx.preset
    plan = build_plan(preset.sweep_preset, **preset.sweep)
    outcome = run_sweep(SweepSettings(plan, accuracy=preset.sweep_accuracy), run_context(ctx).part(SWEEP_DIR))
    ctx.record.add_artifact("sweep", f"{SWEEP_DIR}/{SWEEP_CSV}")
    searches = outcome.summary.get("searches") or {}
    findings = [f"{p.key.label(plan.load_mode)}: {p.status} ({p.reason})" for p in outcome.points if p.status != OK]
    findings += [f"{key} search: {s['stop_reason']} ({s['detail']}): its max rate is a lower bound"
                 for key, s in searches.items() if not s.get("converged")]
    findings += list(outcome.summary.get("notes") or [])
    if not outcome.interrupted and not outcome.measured_anything():
        raise HarnessError(f"no sweep point could be measured: {'; '.join(findings[:3])}")
    summary = {"points": len(outcome.points), "statuses": outcome.statuses(), "elapsed_s": round(outcome.elapsed_s, 1),
               "max_rates": {f"{c['precision']}/{c['max_batch_size']}": c["max_rate"]["text"]
                             for c in outcome.summary.get("configurations") or []}}
    return StageOutcome(findings=findings, summary=summary, path=SWEEP_DIR, aborted=outcome.interrupted,
                        reason=f"see {SWEEP_DIR}/{SUMMARY_JSON}" if findings else None)


# ----- capacity -------------------------------------------------------------------------------------

def capacity_stage(ctx: JobContext) -> StageOutcome:
    """Plan replicas for the preset's target and check the linear model (`harness.workflows.capacity.run_capacity`,
    as `harness capacity`)."""
    from harness.sweep.crosscheck import read_sweep_reference
    from harness.sweep.planner import CapacitySettings
    from harness.workflows.capacity import capacity_summary, run_capacity

    settings = CapacitySettings.from_mapping(dict(ctx.preset.capacity))
    # the sweep's figure for the same configuration (when it ran) cross-checks one replica's search
    data = run_capacity(settings, run_context(ctx).part(CAPACITY_DIR),
                        reference=read_sweep_reference(ctx.out_dir / SWEEP_DIR, settings))
    plan = data.get("plan") or {}
    bound = "" if plan.get("per_replica_converged", True) else "at most "
    ctx.say(f"plan: {bound}{plan.get('replicas')} replica(s) for {plan.get('target_rps'):g} rps, one replica sustaining "
            f"{plan.get('per_replica_text')}" + (f"; {plan['bound_note']}" if plan.get("bound_note") else ""))
    return StageOutcome(summary=capacity_summary(data), path=CAPACITY_DIR, reason=data.get("note") or None)


# ----- report ---------------------------------------------------------------------------------------

def report_stage(ctx: JobContext) -> StageOutcome:
    """Write report.html, report.md and summary.json (with the baseline comparison); verdict is the report's."""
    from harness.jsonfile import read_json
    from harness.report.compare import compare_runs
    from harness.report.writer import write_report

    comparison = None
    if ctx.baseline is not None:
        ctx.say(f"comparing with the baseline {ctx.baseline}")
        comparison = compare_runs(ctx.out_dir, ctx.baseline)
        for warning in comparison.get("warnings") or []:
            ctx.say(f"warning: {warning}")
    job = {"target": ctx.target.describe(), "stages": [result.to_dict() for result in ctx.results.values()]}
    paths = write_report(ctx.out_dir, comparison=comparison, job=job,
                         title=f"harness run {ctx.preset.name}: {ctx.record.run_id}")
    ctx.values["report_paths"] = dict(paths)
    for name, key in (("report_html", "html"), ("report_md", "markdown"), ("summary", "summary")):
        ctx.record.add_artifact(name, Path(paths[key]).name)
    summary = read_json(paths["summary"])
    findings = list((comparison or {}).get("regressions") or [])
    findings += [f"{s['title']}: " + ("; ".join(s.get("findings") or []) or "failed")
                 for s in summary.get("sections", []) if s.get("failed")]
    findings += [f"unreadable: {e}" for e in summary.get("unreadable") or []]
    ctx.say(summary.get("verdict", ""))
    return StageOutcome(verdict=PASS if summary.get("passed") else FAIL, findings=findings,
                        summary={"passed": summary.get("passed"), "regressions": len((comparison or {}).get("regressions") or []),
                                 "sections": len(summary.get("sections", []))})


def default_stages(preset: Any, target: Any = None) -> list[Stage]:
    """Return the job's stages for ``preset`` (a `JobPreset`), in order, with its budgets; on a
    Kubernetes ``target`` (a `PlatformTarget`) the stages in `KUBERNETES_SKIPS` are skipped, saying why,
    and given a spec of the user's own those in `OWN_SPEC_SKIPS`."""
    skips = {}
    if target is not None and target.is_kubernetes:
        skips = KUBERNETES_SKIPS
    elif target is not None and target.own_spec:
        skips = OWN_SPEC_SKIPS
    run = {"preflight": preflight_stage, "deploy": deploy_stage, "load": load_stage, "chaos": chaos_stage,
           "sweep": sweep_stage, "capacity": capacity_stage, "report": report_stage}
    needs = {"load": ("deploy",)}
    return [Stage(name, run[name], 0.0 if name in skips else preset.budgets_s[name], needs=needs.get(name, ()),
                  always=name == "report", skip_reason=skips.get(name))
            for name in preset.budgets_s]
