"""`measure_capacity`: the capacity plan and its check on the local platform.

The capacity workflow (`harness.workflows.capacity.run_capacity`, behind `harness capacity`, the main
job's capacity stage and the capacity scenario) calls `measure_capacity` with a `CapacitySettings`;
it writes ``OUT/capacity.json`` and returns its data. One replica's max rate
comes from `harness.sweep.maxrate.find_max_rate` on a one-replica deployment measured directly (as
the sweep measures each configuration), so the sweep's figure for the same precision and batch size
and this one are measured by the same code in the same way; larger counts go through the front
balancer, as users' traffic would, and start their search at `EXPECTED_FRACTION` of N x one
replica's rate. The plan, its bracket when the search did not converge, and the linear-scaling
check come from `harness.sweep.capacity`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.config import PRECISIONS
from harness.cpus import plan_cpus, usable_cpus
from harness.errors import ConfigError

__all__ = ["CAPACITY_JSON", "CapacitySettings", "validate_capacity_settings", "capacity_plan", "measure_capacity"]

CAPACITY_JSON = "capacity.json"


@dataclass(frozen=True)
class CapacitySettings:
    """What to plan for and how to measure it (the flags of `harness capacity`; a job profile's ``capacity``)."""

    target_rps: float
    p99_ms: float
    headroom: float = 0.3
    max_replicas: int | None = None  # most replicas the check may deploy (None: this machine's cores)
    model: str | None = None
    precision: str = "fp32"
    batch_size: int = 32
    max_queue_delay_ms: float | None = None
    window_s: float = 3.0
    warmup_s: float = 2.0
    search_budget_s: float = 240.0  # wall-clock bound of each replica count's search

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "CapacitySettings":
        """Return the settings of a mapping (a job profile's ``capacity``); ConfigError names an unknown key."""
        known = set(cls.__dataclass_fields__)
        for name, value in values.items():
            if name not in known:
                raise ConfigError(name, value, "unknown capacity setting")
        return cls(**values)


def validate_capacity_settings(settings: CapacitySettings) -> None:
    """Raise ConfigError naming the first unusable setting and its value."""
    from harness.sweep.capacity import validate_capacity_inputs

    validate_capacity_inputs(settings.target_rps, settings.p99_ms, settings.headroom, settings.max_replicas)
    if settings.precision not in PRECISIONS:
        raise ConfigError("precision", settings.precision, f"choose from {', '.join(PRECISIONS)}")
    if not settings.search_budget_s > 0:
        raise ConfigError("search_budget_s", settings.search_budget_s, "must be greater than zero")


def capacity_plan(settings: CapacitySettings):
    """Return the `SweepPlan` the searches measure with (one configuration, the settings' SLO and windows)."""
    from harness.sweep.grid import build_plan

    return build_plan(
        "smoke", model=settings.model, precisions=(settings.precision,), batch_sizes=(settings.batch_size,),
        p99_ms=settings.p99_ms, window_s=settings.window_s, warmup_s=settings.warmup_s,
        max_queue_delay_ms=settings.max_queue_delay_ms, search_budget_s=settings.search_budget_s,
        point_budget_s=max(30.0, settings.warmup_s + 4 * settings.window_s + 10.0),
    )


def _workers(probe) -> str:
    count = probe.measurement.generator_workers
    return f" ({count} generator processes)" if count > 1 else ""


def measure_capacity(settings: CapacitySettings, out_dir: str | Path, *,
                     progress: Callable[[str], None] = lambda line: None, reference: Any = None) -> dict[str, Any]:
    """Measure, plan and check; write ``capacity.json`` under ``out_dir`` and return its data.

    ``reference`` (a `harness.sweep.crosscheck.ReplicaReference`: the sweep's figure for the same
    configuration) cross-checks one replica's search: on a disagreement it is searched once more from
    the reference's figure and the plan uses that search (``cross_check`` in the data, said in the note).

    Raises ConfigError for bad settings (before anything is deployed), HarnessError when one replica
    meets the SLO at no rate or a deployment fails.
    """
    from harness.jsonfile import write_json
    from harness.sweep.capacity import check_linear_scaling
    from harness.sweep.local import LocalSweepBackend
    from harness.sweep.crosscheck import agree, cross_check_note
    from harness.sweep.maxrate import find_max_rate, search_session

    validate_capacity_settings(settings)
    cores = usable_cpus() or [0]  # [0]: a platform that cannot pin; one core counted
    allowed = min(settings.max_replicas or len(cores), len(cores))
    plan = capacity_plan(settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generator_cpus = plan_cpus(cores).generator
    measured: dict[int, float] = {}
    what = f"{settings.precision} batch={settings.batch_size}"
    checked: dict[str, Any] = {}

    def measure_replicas(count: int):
        # one replica gets the service cores and is measured directly, as the sweep measures it; more
        # replicas than those share every core (said in the note) and take traffic through the balancer
        cpus = plan_cpus(cores, replicas=count)
        backend = LocalSweepBackend(plan, out / "deployments", replicas=count, cpus=cpus)
        route = "directly" if backend.direct else "through the front balancer"
        progress(f"replicas={count}: deploying {what} on CPU {list(cpus.service or cores)}, generator on CPU "
                 f"{list(cpus.generator) if cpus.generator else 'shared'}, load {route} ...")
        with backend.open(settings.precision, settings.batch_size, ready_timeout_s=plan.ready_timeout_s) as session:
            def started(pre, start_rps: float) -> None:
                source = f"pre-check {pre.detail}" if pre is not None else f"expected {count} x {measured[1]:.1f} rps"
                progress(f"replicas={count}: {source}; searching from {start_rps:.0f} rps")

            def on_probe(p) -> None:
                progress(f"  replicas={count} probe {p.rate_rps:.1f} rps{_workers(p)}: {p.verdict} ({p.reason})")

            result = find_max_rate(
                session, plan, budget_s=plan.search_budget_s,
                expected_rps=count * measured[1] if count > 1 and measured.get(1) else None, on_start=started,
                on_probe=on_probe,
            )
            if count == 1 and reference is not None:
                first = result
                if not agree(first.max_rate_rps, reference.rate_rps):
                    progress(f"replicas=1: {first.max_rate_rps:.1f} rps disagrees with {reference.source} "
                             f"({reference.rate_rps:.1f} rps); searching again from {reference.rate_rps:.1f} rps")
                    result = search_session(session, plan, start_rps=reference.rate_rps,
                                            budget_s=plan.search_budget_s, on_probe=on_probe)
                second = result if result is not first else None
                checked.update(reference=reference.to_dict(), first=first.to_dict(),
                               second=second.to_dict() if second else None,
                               agrees=agree(result.max_rate_rps, reference.rate_rps),
                               note=cross_check_note(reference, first.max_rate_rps,
                                                     second.max_rate_rps if second else None))
            measured[count] = result.max_rate_rps
            return result

    check = check_linear_scaling(
        measure_replicas, target_rps=settings.target_rps, p99_ms=settings.p99_ms, headroom=settings.headroom,
        allowed_replicas=allowed,
        on_point=lambda p: progress(f"replicas={p.replicas}: max sustainable {p.to_dict()['measured']} rps "
                                    f"(predicted {p.predicted_rps:.1f}, ratio {p.ratio:.2f})"),
    )
    data = check.to_dict()
    shared = any(plan_cpus(cores, replicas=p.replicas).shared for p in check.points)
    if shared:
        data["note"] = "; ".join(filter(None, [data["note"], (
            f"with {max(p.replicas for p in check.points)} replicas on {len(cores)} cores the replicas share cores with "
            "the load generator and the front balancer, so the check includes that contention")]))
    if checked:
        from harness.sweep.crosscheck import DEFINITION

        data["cross_check"] = {**checked, "definition": DEFINITION}
        data["note"] = "; ".join(filter(None, [checked["note"], data["note"]]))
    data["config"] = {"model": plan.model, "precision": settings.precision, "max_batch_size": settings.batch_size,
                      "max_queue_delay_ms": plan.max_queue_delay_ms, "cores": cores,
                      "generator_cpus": list(generator_cpus) if generator_cpus else None,
                      "settings": settings.to_dict(), "one_replica_measured": "directly, as the sweep"}
    write_json(out / CAPACITY_JSON, data)
    return data
