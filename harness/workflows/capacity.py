"""The capacity workflow: `run_capacity`, the one home of `harness capacity`, the main job's capacity stage
and the capacity scenario.

`run_capacity(settings, context)` validates the settings before anything is deployed, records the
run (``run.json``, kind ``capacity``: a run of its own or a part of a ``parent`` run), measures one
replica's max sustainable rate under the SLO, plans the replicas and checks the plan by deploying
(`harness.sweep.planner.measure_capacity`), and finishes the record: completed, aborted (interrupted)
or failed (the error). Files in the run context's output directory
(`harness.workflows.context.RunContext`: already absolute): ``capacity.json``, ``deployments/`` and ``run.json``.
"""

from __future__ import annotations

from typing import Any

from harness.results import new_part_record, new_run_record, save_run
from harness.sweep.planner import CAPACITY_JSON, CapacitySettings
from harness.workflows.context import RunContext

__all__ = ["run_capacity", "capacity_summary"]


def run_capacity(settings: CapacitySettings, context: RunContext, *, reference: Any = None) -> dict[str, Any]:
    """Measure, plan and check into ``context.out_dir`` (see the module docstring); return ``capacity.json``'s
    data. ``context`` gives the progress callback and the parent run; ``reference`` (the sweep's figure for
    the same configuration, `harness.sweep.crosscheck`) cross-checks one replica's search.

    Raises ConfigError naming the first bad setting (before anything is deployed), HarnessError when
    one replica meets the SLO at no rate or a deployment fails (recorded in run.json first).
    """
    from harness.sweep.planner import capacity_plan, measure_capacity, validate_capacity_settings

    validate_capacity_settings(settings)
    out, parent = context.out_dir, context.parent
    out.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {"config": {**capacity_plan(settings).to_dict(), **settings.to_dict()},
                              "topology": "multi-active"}
    record = (new_run_record("capacity", platform="local", **fields) if parent is None
              else new_part_record(parent, "capacity", out.name, **fields))
    save_run(out, record)
    try:
        data = measure_capacity(settings, out, progress=context.say, reference=reference)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        record.finish("aborted" if interrupted else "failed", "interrupted" if interrupted else f"{type(exc).__name__}: {exc}")
        save_run(out, record)
        raise
    record.add_artifact("capacity", CAPACITY_JSON)
    record.summary = capacity_summary(data)
    record.finish("completed")
    save_run(out, record)
    return data


def capacity_summary(data: dict[str, Any]) -> dict[str, Any]:
    """Return the run record's summary of ``capacity.json``'s data (the plan's figures and the check's worst ratio)."""
    plan = data.get("plan") or {}
    cross = data.get("cross_check") or {}
    return {"replicas": plan.get("replicas"), "per_replica_rps": plan.get("per_replica_rps"),
            "per_replica": plan.get("per_replica_text"), "per_replica_converged": plan.get("per_replica_converged"),
            "target_rps": plan.get("target_rps"), "worst_ratio": data.get("worst_ratio"),
            "agrees_with_sweep": cross.get("agrees")}
