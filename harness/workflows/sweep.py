"""The sweep workflow: `run_sweep`, the one home of `harness sweep`, the main job's sweep stage and the perf scenarios.

`run_sweep(settings, context)` writes into the run context's output directory
(`harness.workflows.context.RunContext`: already absolute), splits the CPUs between the service and the
generator, records the run (``run.json``, kind ``sweep``: a run of its own or a part of a ``parent``
run), measures the accuracy drift (unless told not to), then every point of the plan on the local
platform (`harness.sweep.local.LocalSweepBackend`) through the sweep loop
(`harness.sweep.loop.measure_sweep`), and finishes the record: completed, aborted (SIGINT: what
finished is kept) or failed (the error). Progress is one line per finished point with the ETA, per
search probe and per precision's accuracy.

Files in ``out_dir``: ``sweep.csv`` (one row per point and window, as they complete),
``sweep_summary.json`` (medians with CIs, max rates under the SLO, frontier, effects, accuracy),
``deployments/`` and ``run.json``.

`run_spec_search` is the sweep of a spec's own deployment (``harness sweep --spec FILE``): its max rate by
the same search (`harness.sweep.specsearch`), for an LLM its max goodput rate under the token SLO; it
writes ``max_rate.json``, ``deployment/`` and ``run.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.results import new_part_record, new_run_record, save_run
from harness.sweep.grid import SUMMARY_JSON, SWEEP_CSV, SweepPlan
from harness.sweep.loop import SweepOutcome
from harness.workflows.context import RunContext

MAX_RATE_JSON = "max_rate.json"

__all__ = ["SweepSettings", "run_sweep", "SpecSearchSettings", "run_spec_search", "MAX_RATE_JSON"]


@dataclass(frozen=True)
class SweepSettings:
    """What `run_sweep` measures: the plan (`harness.sweep.grid.build_plan`, which carries the SLO it
    searches under), and whether the accuracy drift (fp16/bf16 against fp32, with the forward pass
    timed) is measured first. Where comes with the run's context."""

    plan: SweepPlan
    accuracy: bool = True


def run_sweep(settings: SweepSettings, context: RunContext) -> SweepOutcome:
    """Run the sweep (see the module docstring); return its outcome (``interrupted`` after SIGINT).

    ``context`` gives the output directory, the progress callback and the parent run. Any error is recorded in run.json as the run's
    failure and raised. A point that cannot be measured is recorded in sweep.csv, not raised.
    """
    from harness.cpus import plan_cpus
    from harness.sweep.accuracy import measure_plan_accuracy
    from harness.sweep.local import LocalSweepBackend
    from harness.sweep.loop import measure_sweep
    from harness.sweep.table import format_probe, format_progress

    say, parent = context.say, context.parent
    plan = settings.plan
    out = context.out_dir
    out.mkdir(parents=True, exist_ok=True)
    cpus = plan_cpus()
    fields: dict[str, Any] = {"config": plan.to_dict(), "topology": "single"}
    record = (new_run_record("sweep", preset=plan.preset, platform="local", **fields) if parent is None
              else new_part_record(parent, "sweep", out.name, **fields))
    save_run(out, record)
    search = f", each with a max-rate search of up to {plan.search_budget_s:g} s" if plan.search else ""
    say(f"sweep {plan.preset}: {len(plan.precisions)} precision(s) x {len(plan.batch_sizes)} batch size(s) x "
        f"{len(plan.load_levels)} {plan.load_mode} level(s) of {plan.model}{search}; service on CPU "
        f"{list(cpus.service) if cpus.service else 'all'}, generator on CPU "
        f"{list(cpus.generator) if cpus.generator else 'shared'}; writing {out / SWEEP_CSV}")

    def accuracy(p: SweepPlan) -> list[Any]:
        if not settings.accuracy:
            return []
        say(f"accuracy drift: {', '.join(p.precisions)} against fp32 on {p.accuracy_samples} seeded inputs, forward "
            f"pass timed at batch {', '.join(map(str, p.batch_sizes))} ...")
        drifts = measure_plan_accuracy(p, cpus=cpus.service)
        for d in drifts:
            timed = ", ".join(f"batch {b} {ms:.2f} ms" for b, ms in d.forward_ms_by_batch.items())
            say(f"  {d.precision}: {d.status} max_abs_error {d.max_abs_error:.3g} mean_abs_error {d.mean_abs_error:.3g} "
                f"forward {timed or 'not timed'} {d.reason} {d.forward_reason}".rstrip())
        return drifts

    def point_done(done: int, total: int, point: Any, elapsed_s: float, eta_s: float) -> None:
        say(format_progress(done, total, point.key.label(plan.load_mode), point.status, point.windows, point.reason,
                            elapsed_s, eta_s))

    backend = LocalSweepBackend(plan, out / "deployments", cpus=cpus)
    try:
        outcome = measure_sweep(plan, backend, out, accuracy=accuracy, progress=point_done,
                                on_probe=lambda precision, batch, probe: say(format_probe(precision, batch, probe)))
    except BaseException as exc:
        record.finish("failed", f"{type(exc).__name__}: {exc}")
        save_run(out, record)
        raise
    record.add_artifact("sweep", SWEEP_CSV)
    record.add_artifact("summary", SUMMARY_JSON)
    record.summary = {"points": len(outcome.points), "statuses": outcome.statuses(),
                      "elapsed_s": round(outcome.elapsed_s, 1),
                      "max_rates": {f"{c['precision']}/{c['max_batch_size']}": c["max_rate"]["text"]
                                    for c in outcome.summary.get("configurations") or []}}
    record.finish("aborted" if outcome.interrupted else "completed", "interrupted (SIGINT)" if outcome.interrupted else None)
    save_run(out, record)
    return outcome


@dataclass(frozen=True)
class SpecSearchSettings:
    """The search of the context's spec: the plan (its SLO, windows, budget and ``min_good_share``) and the token
    SLO a generative target's requests are judged by (None: every bound unset but the end-to-end one)."""

    plan: SweepPlan
    token_slo: Any = None


def run_spec_search(settings: SpecSearchSettings, context: RunContext) -> dict[str, Any]:
    """Deploy the context's spec, search its max rate (an LLM: its max goodput rate), write ``max_rate.json`` and
    run.json; return the result's data. Any error is recorded in run.json as the run's failure and raised."""
    from harness.cpus import plan_cpus
    from harness.jsonfile import write_json
    from harness.sweep.specsearch import search_spec

    spec, plan, out = context.require_spec(), settings.plan, context.out_dir
    out.mkdir(parents=True, exist_ok=True)
    cpus = plan_cpus(replicas=spec.replica_count)
    fields: dict[str, Any] = {"config": {**plan.to_dict(), "spec": spec.name}, "topology": spec.topology}
    record = (new_run_record("sweep", preset=plan.preset, platform="local", **fields) if context.parent is None
              else new_part_record(context.parent, "sweep", out.name, **fields))
    save_run(out, record)
    context.say(f"max-rate search of spec {spec.name} ({spec.topology}, {spec.replica_count} replica(s)), up to "
                f"{plan.search_budget_s:g} s; service on CPU {list(cpus.service) if cpus.service else 'all'}")
    try:
        data = search_spec(spec, plan, out, cpus=cpus, token_slo=settings.token_slo, progress=context.say)
    except BaseException as exc:  # the deployment is down already (search_spec's teardown); SIGINT: aborted
        interrupted = isinstance(exc, KeyboardInterrupt)
        record.finish("aborted" if interrupted else "failed",
                      "interrupted (SIGINT)" if interrupted else f"{type(exc).__name__}: {exc}")
        save_run(out, record)
        raise
    write_json(out / MAX_RATE_JSON, data)
    record.add_artifact("max_rate", MAX_RATE_JSON)
    record.summary = {k: data.get(k) for k in ("max_rate_rps", "max_rate_text", "goodput_rps", "good_share", "protocol")
                      if k in data}
    record.finish("completed", None)
    save_run(out, record)
    return data
