"""Performance scenarios: deployments, load runs, the sweep and the capacity plan, with their expectations.

What each measures comes from the main job's preset (`harness.job.presets.JOB_PRESETS`), and the
load, sweep and capacity parts are produced by the workflows the main job calls (`harness.workflows`),
so ``pytest scenarios/ --harness-preset smoke`` and ``harness run smoke`` measure the same things
into the same layout (``load``, ``sweep``, ``capacity``): either one is a baseline for the other.

- `DeploymentFactory` (the ``deploy_service`` fixture): deploys a spec, waits Ready, tears every
  deployment down at the end of the test.
- `LoadScenarios` (the ``load`` fixture): a Locust profile with the prober and telemetry against a
  deployment (`harness.workflows.load.run_load`; Locust runs in its own process); `LoadOutcome`
  judges it against the SLO and the SLA tier with `harness.measure.load_verdict.judge_load` (as `harness load`
  and the main job): p99, errors, availability, memory growth.
- `PerfScenario` (the ``perf`` fixture): the sweep, once per session; `SweepResult` holds the summary.
- `CapacityScenario` (the ``capacity`` fixture): the plan and its check, once per session.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from harness.scenarios.session import Comparison, NotApplicable, ScenarioSession, expect_none

__all__ = [
    "MIN_SCALING_RATIO",
    "DeploymentFactory",
    "LoadOutcome",
    "LoadScenarios",
    "SweepResult",
    "PerfScenario",
    "CapacityResult",
    "CapacityScenario",
]

# N replicas on N cores of their own should sustain at least this share of N x one replica's max rate
MIN_SCALING_RATIO = 0.7
DEPLOYMENTS_DIR = "deployments"

log = logging.getLogger("harness.scenarios")


def run_context(session: ScenarioSession, path: Path, **changes: Any) -> Any:
    """Return the `harness.workflows.context.RunContext` of one part of the scenario session: written to
    ``path``, on the session's platform, a part of the session's run, its progress on the scenarios' log."""
    from harness.workflows.context import RunContext

    fields: dict[str, Any] = {"platform": session.options.platform, "parent": session.record,
                              "progress": lambda line: log.info("%s", line), **changes}
    return RunContext(path, **fields)


def _job_preset(session: ScenarioSession) -> Any:
    from harness.job import get_job_preset

    return get_job_preset(session.options.preset)


def _not_for_a_spec(session: ScenarioSession, stage: str) -> None:
    """Raise NotApplicable with the main job's reason (`OWN_SPEC_SKIPS`) when the session measures a spec of its own."""
    from harness.job.stages import OWN_SPEC_SKIPS

    if session.options.spec is not None:
        raise NotApplicable(f"{stage} with --harness-spec: {OWN_SPEC_SKIPS[stage]}")


class DeploymentFactory:
    """Deploys service specs on the session's platform; `close` tears down every one it made."""

    def __init__(self, session: ScenarioSession) -> None:
        self.session = session
        self._deployments: list[Any] = []

    def __call__(self, topology: str | None = None, *, spec: str | Path | None = None,
                 ready_timeout_s: float | None = None) -> Any:
        """Deploy ``spec`` (a YAML file; default ``--harness-spec``, else the reference service) as ``topology``
        (default: a spec file's own, the reference service's single); return it once Ready.

        Raises NotApplicable when replaying or when the platform is unavailable here, ConfigError for
        a bad spec, DeploymentError when it does not become Ready within ``ready_timeout_s``.
        """
        from harness.config import load_spec
        from harness.errors import PlatformUnavailable
        from harness.cpus import plan_cpus
        from harness.platforms import deploy

        if self.session.replaying:
            raise NotApplicable("a live deployment cannot be replayed from saved data")
        spec = spec or self.session.options.spec
        service_spec = load_spec(spec, topology=topology or (None if spec else "single"))
        platform = self.session.options.platform
        topology = service_spec.topology
        workdir = self.session.run_dir / DEPLOYMENTS_DIR / f"{service_spec.name}-{topology}-{len(self._deployments) + 1}"
        cpus = plan_cpus().service if platform == "local" else None
        try:
            deployment = deploy(service_spec, platform=platform, workdir=workdir, cpus=cpus)
        except PlatformUnavailable as exc:
            raise NotApplicable(f"platform {platform} unavailable: {exc}") from exc
        self._deployments.append(deployment)
        log.info("deployed %s (%d replica(s)) on %s; waiting until Ready", topology, service_spec.replica_count, platform)
        deployment.wait_ready(timeout_s=ready_timeout_s or _job_preset(self.session).ready_timeout_s)
        return deployment

    def close(self) -> list[str]:
        """Tear down every deployment (even when one fails to); return the errors met, one line each."""
        errors = []
        while self._deployments:
            deployment = self._deployments.pop()
            try:
                deployment.close()
            except Exception as exc:  # the others must still be torn down
                errors.append(f"tearing down {getattr(deployment, 'endpoint', deployment)}: {exc}")
        return errors


class LoadOutcome:
    """One load run's ``result.json``, judged against the SLO and an SLA tier by the one judgement of a
    load (`harness.measure.load_verdict.judge_load`, as `harness load` and the main job)."""

    def __init__(self, result: dict[str, Any], path: Path, tier: str, slo: Any = None, verdict: Any = None) -> None:
        self.result = result
        self.path = path
        self.tier = tier
        self.slo = slo  # a harness.slo.Slo; None: the defaults
        self._verdict = verdict  # run_load's, when it judged this load

    def verdict(self) -> Any:
        """Return the `harness.measure.load_verdict.LoadVerdict` of this load: run_load's, else judged
        from the saved figures and the telemetry beside them (`judge_saved_load`)."""
        from harness.measure.load_verdict import judge_saved_load

        if self._verdict is None:
            self._verdict = judge_saved_load(self.path, self.result, self.slo, tier=self.tier)
        return self._verdict

    def violations(self) -> list[str]:
        """Return why the SLO or the tier is not met: each figure over its bound, every alert (empty when met
        or inconclusive)."""
        verdict = self.verdict()
        return list(verdict.reasons) if verdict.failed else []

    def expect_tier(self) -> None:
        """Raise ScenarioFailed listing every violation of the SLO and the tier (see `violations`);
        Inconclusive when too few requests were measured to tell."""
        from harness.measure.load_verdict import INCONCLUSIVE
        from harness.scenarios.session import Inconclusive

        verdict = self.verdict()
        saturated = " (the load generator saturated: latencies include its delay)" if self.result.get("generator_saturated") else ""
        expect_none(self.violations(), f"load on {self.result.get('topology')}: {verdict.criteria} not met{saturated}")
        if verdict.outcome == INCONCLUSIVE:
            raise Inconclusive(f"load on {self.result.get('topology')}: {verdict.criteria}", verdict.reasons)


class LoadScenarios:
    """The ``load`` fixture: runs load profiles against deployments into ``load`` parts."""

    def __init__(self, session: ScenarioSession) -> None:
        self.session = session

    def run(self, deployment: Any, *, kind: str | None = None, duration_s: float | None = None,
            users: int | None = None, tier: str | None = None) -> LoadOutcome:
        """Run load of ``kind`` (default: the preset's load profile) against a Ready deployment
        (`harness.workflows.load.run_load`, as `harness load` and the main job); return the outcome.

        Raises ConfigError for a bad load profile, HarnessError when the generator or prober cannot run.
        """
        from harness.load.profiles import build_profile
        from harness.cpus import CpuPlan, plan_cpus
        from harness.measure.sla_config import TIER_FOR_TOPOLOGY
        from harness.workflows.load import LoadSettings, run_load

        job = _job_preset(self.session)
        spec = deployment.spec
        profile = build_profile(kind or job.load_kind, duration_s or job.load_duration_s, users=users or job.load_users,
                                model=spec.service.model, protocol=spec.target.protocol if spec.target else None)
        platform = self.session.options.platform
        tier = tier or self.session.options.tier or TIER_FOR_TOPOLOGY[spec.topology]
        settings = LoadSettings(load=profile, cpus=plan_cpus() if platform == "local" else CpuPlan(None, None), tier=tier)
        context = run_context(self.session, self.session.part_dir("load"), spec=spec,
                              progress=lambda line: log.info("load: %s", line))
        log.info("load %s for %g s against %s", profile.kind, profile.duration_s, deployment.endpoint)
        run = run_load(settings, context, deployment=deployment)
        return LoadOutcome(run.result, run.out_dir, tier, context.slo, run.verdict)


class SweepResult:
    """A finished sweep part: ``sweep_summary.json`` (points with their SLO verdicts) and its comparison."""

    def __init__(self, session: ScenarioSession, path: Path) -> None:
        from harness.jsonfile import read_json
        from harness.sweep.grid import SUMMARY_JSON

        self.session = session
        self.path = path
        self.summary = read_json(path / SUMMARY_JSON)
        self.points = list(self.summary.get("points") or [])

    @property
    def p99_slo_ms(self) -> float:
        return float((self.summary.get("slo") or {}).get("p99_ms") or math.nan)

    def expect_no_errors(self) -> None:
        """Raise ScenarioFailed listing every point that failed outright (a time bound is not a failure)."""
        expect_none([f"{_label(p)}: {p.get('reason') or 'error'}" for p in self.points if p.get("status") == "error"],
                    "sweep points that failed")

    def expect_slo_met_at_every_rate(self) -> None:
        """Raise ScenarioFailed listing every swept rate at which no configuration met the p99 SLO.

        The question a sign-off asks: can the service be configured to serve each rate within the SLO?
        Which configuration is best is the report's; how it moved since the baseline, the comparison's.
        """
        findings = []
        for rate in sorted({float(p.get("load_level", math.nan)) for p in self.points}):
            at_rate = [p for p in self.points if math.isclose(float(p.get("load_level", math.nan)), rate)]
            measured = [p for p in at_rate if p.get("windows")]
            if not measured:
                statuses = ", ".join(sorted({str(p.get("status")) for p in at_rate}))
                findings.append(f"{rate:g} rps: no configuration was measured ({statuses})")
            elif not any(p.get("meets_slo") for p in measured):
                findings.append(f"{rate:g} rps: no configuration met the SLO ("
                                + "; ".join(f"{_label(p)}: {p.get('slo_verdict')}" for p in measured) + ")")
        expect_none(findings, f"rates no configuration serves within p99 <= {self.p99_slo_ms:g} ms")

    def compare_with_baseline(self) -> Comparison:
        """Return the comparison with the baseline's sweep; NotApplicable without --harness-baseline."""
        return self.session.compare_part(self.path)


def _label(point: dict[str, Any]) -> str:
    return f"{point.get('precision')} batch={point.get('max_batch_size')} at {float(point.get('load_level', math.nan)):g} rps"


class PerfScenario:
    """The ``perf`` fixture: the preset's sweep, measured once per session (later tests reuse it)."""

    def __init__(self, session: ScenarioSession) -> None:
        self.session = session
        self._result: SweepResult | None = None

    def sweep_plan(self) -> Any:
        """Return the preset's `harness.sweep.grid.SweepPlan` (what ``harness run <preset>`` sweeps)."""
        from harness.sweep.grid import build_plan

        job = _job_preset(self.session)
        return build_plan(job.sweep_preset, **job.sweep)

    def sweep(self) -> SweepResult:
        """Run the sweep into the ``sweep`` part (first call only; `harness.workflows.sweep.run_sweep`, as
        ``harness run`` and `harness sweep`); return its result.

        Raises NotApplicable off the local platform, HarnessError when no point could be measured.
        """
        from harness.errors import HarnessError
        from harness.job.stages import SWEEP_DIR
        from harness.sweep.grid import SWEEP_CSV
        from harness.workflows.sweep import SweepSettings, run_sweep

        if self._result is None:
            if self.session.options.platform != "local" and not self.session.replaying:
                raise NotApplicable("sweeps deploy on the local platform only (harness.sweep.local)")
            _not_for_a_spec(self.session, "sweep")
            path = self.session.part_dir(SWEEP_DIR, unique=False)
            if not self.session.replaying:
                settings = SweepSettings(self.sweep_plan(), accuracy=_job_preset(self.session).sweep_accuracy)
                outcome = run_sweep(settings, run_context(self.session, path))
                self.session.record.add_artifact("sweep", f"{SWEEP_DIR}/{SWEEP_CSV}")
                if not outcome.interrupted and not outcome.measured_anything():
                    raise HarnessError(f"no sweep point could be measured: see {path}")
            self._result = SweepResult(self.session, path)
        return self._result


class CapacityResult:
    """A finished capacity part (``capacity.json``): the plan, each replica count measured, the note."""

    def __init__(self, path: Path) -> None:
        from harness.jsonfile import read_json

        self.path = path
        self.data = read_json(path / "capacity.json")
        self.plan = dict(self.data.get("plan") or {})
        self.points = list(self.data.get("points") or [])

    def service_cores(self) -> int | None:
        """How many cores the replicas had to themselves (None when not recorded)."""
        config = self.data.get("config") or {}
        cores, generator = config.get("cores"), config.get("generator_cpus")
        return None if cores is None else len(cores) - len(generator or [])

    def expect_plan(self) -> None:
        """Raise ScenarioFailed listing why the plan cannot be trusted: no rate met the SLO, a count unmeasured."""
        per_replica, replicas = self.plan.get("per_replica_rps") or 0.0, self.plan.get("replicas") or 0
        findings = [] if per_replica > 0 else [f"one replica sustained no rate under p99 <= {self.plan.get('p99_ms')} ms"]
        findings += [f"{p['replicas']} replica(s) sustained no rate under the SLO" for p in self.points if not p.get("measured_rps")]
        if per_replica > 0 and replicas * per_replica < (self.plan.get("required_rps") or 0) - 1e-6:
            findings.append(f"{replicas} x {per_replica:.1f} rps does not cover the required {self.plan.get('required_rps')} rps")
        expect_none(findings, "the capacity plan")

    def expect_scaling(self, min_ratio: float = MIN_SCALING_RATIO) -> None:
        """Raise ScenarioFailed when N replicas on cores of their own sustained < ``min_ratio`` x N x one replica.

        NotApplicable when every multi-replica count shared cores (nothing to judge on this machine).
        """
        cores = self.service_cores()
        judged = [p for p in self.points if p["replicas"] > 1 and cores is not None and p["replicas"] <= cores]
        if not judged:
            counts = ", ".join(str(p["replicas"]) for p in self.points if p["replicas"] > 1) or "none"
            raise NotApplicable(f"linear scaling not judged: replica counts measured ({counts}) exceed the "
                                f"{cores} core(s) the replicas had to themselves; {self.data.get('note') or ''}".rstrip("; "))
        expect_none([f"{p['replicas']} replicas sustained {p['measured_rps']:.1f} rps, {p['ratio']:.2f} of the "
                     f"predicted {p['predicted_rps']:.1f} (< {min_ratio:g})" for p in judged if p["ratio"] < min_ratio],
                    "linear scaling did not hold")


class CapacityScenario:
    """The ``capacity`` fixture: the profile's plan and check (``harness capacity``), once per session."""

    def __init__(self, session: ScenarioSession) -> None:
        self.session = session
        self._result: CapacityResult | None = None

    @property
    def target(self) -> dict[str, Any]:
        """The profile's capacity settings: target_rps, p99_ms, headroom, ... (the `harness capacity` flags)."""
        return dict(_job_preset(self.session).capacity)

    def plan_and_check(self) -> CapacityResult:
        """Measure one replica, plan, check the plan by deploying (first call only;
        `harness.workflows.capacity.run_capacity`, as ``harness run`` and `harness capacity`); return the result.

        Raises NotApplicable off the local platform, HarnessError when one replica meets the SLO at no rate.
        """
        from harness.job.stages import CAPACITY_DIR
        from harness.sweep.planner import CapacitySettings
        from harness.workflows.capacity import run_capacity

        if self._result is None:
            if self.session.options.platform != "local" and not self.session.replaying:
                raise NotApplicable("the capacity check deploys on the local platform only")
            _not_for_a_spec(self.session, "capacity")
            path = self.session.part_dir(CAPACITY_DIR, unique=False)
            if not self.session.replaying:
                run_capacity(CapacitySettings.from_mapping(self.target), run_context(self.session, path))
            self._result = CapacityResult(path)
        return self._result
