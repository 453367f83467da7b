"""One chaos run under load: deploy, baseline, inject through chaoslib, measure until recovered, tear down.

`ChaosRun.execute` is what `harness chaos run`, the matrix (`harness.workflows.matrix`), the main
job and the chaos scenarios call; its settings are `harness.chaos.settings.ChaosRunSettings`. The phases:

1. deploy the spec (preset base or the user's ``--spec``, then the experiment's overlay, then the
   topology) and wait until every replica is Ready (unless the fault is the start itself);
2. start telemetry, the client-side prober and the background load; measure a steady baseline;
3. run the experiment through chaoslib with ``HARNESS_STATE_FILE`` set (journal kept, rollbacks
   always played); the injection time is when its first action ran;
4. keep measuring until clients see a stable recovery for the preset's after-window, or the
   recovery timeout; stop load, prober and telemetry;
5. clear every fault, tear the deployment down, judge the run and write ``result.json``.

SIGINT or SIGTERM at any point ends the run early: measuring stops, faults are cleared, the
deployment is torn down (further signals are held off while that happens), and the result says
``aborted: true``. Everything is written under the run context's ``out_dir``
(`harness.workflows.context.RunContext`: `harness chaos run` builds it from ``--out``, the matrix one
per cell).
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from harness.chaos.experiment import ENV_RECOVERY_TIMEOUT_S, ENV_SLO_LATENCY_MS, ENV_STATE_FILE
from harness.chaos.observers import Observers, protocol_with_inputs
from harness.chaos.settings import ChaosRunSettings
from harness.cpus import plan_cpus
from harness.errors import DeploymentError, HarnessError
from harness.platforms.base import copy_events
from harness.request_records import TIMELINE_FILE, ProbeSample, read_records
from harness.signals import INTERRUPTS, on_signals
from harness.workflows.context import RunContext

__all__ = ["ChaosRun"]

_POLL_S = 0.25
_FLUSH_LAG_S = 0.5  # the prober appends about every 0.25 s: judge only what is surely written


class _Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; raised where the harness (not chaoslib) was running."""


class ChaosRun:
    """One chaos run (see the module docstring); `execute` returns the result mapping."""

    def __init__(self, settings: ChaosRunSettings, context: RunContext) -> None:
        """``context`` gives the output directory (absolute) and the progress callback."""
        from harness.measure.sla_config import TIER_FOR_TOPOLOGY, SlaConfig

        self.settings = settings
        self.preset = settings.preset
        self.experiment = settings.experiment
        self.out_dir = context.out_dir
        self.sla = settings.sla or SlaConfig()
        self.tier = settings.tier or TIER_FOR_TOPOLOGY[settings.topology]
        self.sla.tier(self.tier)  # ConfigError naming the known tiers
        self.slo_latency_ms = settings.slo_latency_ms or self.sla.thresholds.p99_latency_ms
        self.spec = settings.spec()
        self.recovery_timeout_s = min(self.experiment.extension.recovery_timeout_s, self.preset.recovery_timeout_cap_s)
        self._say = context.say
        self.phase = "setup"
        self.interrupted = False
        self.deployment = None
        self.observers = Observers()  # load, prober, telemetry
        self.journal: dict[str, Any] | None = None
        self.injected_at: float | None = None
        self.target_replica: str | None = None
        self.deployed_at: float | None = None
        self.experiment_end_s: float | None = None
        self.end_s: float | None = None
        self.errors: list[str] = []
        self.experiment_configuration: dict[str, Any] = {}  # the values its ${...} placeholders took
        self.faults_cleared: dict[str, str] = {}
        self.phase_s: dict[str, float] = {}
        self.teardown_failed = False
        self._phase_started = time.monotonic()

    # ----- signals --------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.interrupted = True
        raise _Interrupted(signal.Signals(signum).name)

    def _hold_signal(self, signum: int, _frame: Any) -> None:
        self.interrupted = True  # cleanup is under way: remember, do not break it

    def _enter(self, phase: str) -> None:
        """Start ``phase``; the time spent in the previous one goes into ``phase_s`` (result.json)."""
        now = time.monotonic()
        self.phase_s[self.phase] = round(self.phase_s.get(self.phase, 0.0) + now - self._phase_started, 3)
        self.phase, self._phase_started = phase, now

    # ----- the run ----------------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        """Run every phase; return the result (also written to ``out_dir/result.json``).

        Raises HarnessError (deployment never Ready, a generator failing to start) after cleaning up;
        an interrupt is not raised but recorded (``aborted``).
        """
        from harness.chaos.fit import target_fit

        self.out_dir.mkdir(parents=True, exist_ok=True)
        why_not = target_fit(self.experiment, self.spec.target_kind, hooks=bool(getattr(self.spec.target, "fault_hooks", 0)))
        if why_not is not None:  # a fault this system under test cannot take: said, never a failure
            return self._skip(why_not)
        failure: BaseException | None = None
        with on_signals(INTERRUPTS, self._on_signal):
            try:
                self._run_phases()
            except KeyboardInterrupt:
                self.interrupted = True
            except HarnessError as exc:
                failure = exc
                self.errors.append(str(exc))
            finally:
                with on_signals(INTERRUPTS, self._hold_signal):
                    ended_in = self.phase
                    self._enter("teardown")
                    self._finish()
                    self._enter(ended_in)
        with on_signals(INTERRUPTS, self._hold_signal):
            result = self._judge()
        if failure is not None and not self.interrupted:
            raise failure
        if self.teardown_failed:
            raise DeploymentError(f"teardown of {self.out_dir / 'deployment'} failed: {'; '.join(self.errors)}")
        return result

    def _run_phases(self) -> None:
        running = self.experiment.extension.inject == "running"
        self._deploy()
        protocol = self.spec.target.protocol if self.spec.target is not None else None
        if protocol is not None and protocol.needs_metadata:  # its tensors are read from the Ready server first
            self._enter("wait-ready")
            protocol = protocol_with_inputs(self.deployment, protocol, running=running,
                                            ready_timeout_s=self.preset.ready_timeout_s)
        # load and prober start while the replicas load (their imports take a second or two); what
        # they record before the baseline is outside every window the analysis looks at
        self._start_measuring(protocol)
        if running:
            self._enter("wait-ready")
            self.deployment.wait_ready(timeout_s=self.preset.ready_timeout_s)
            self._enter("baseline")
            self._say(f"baseline for {self.preset.baseline_s:g} s")
            self._sleep(self.preset.baseline_s)
        self._run_experiment()
        if not self.interrupted:
            self._await_recovery()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.interrupted:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _deploy(self) -> None:
        from harness.platforms import deploy

        self._enter("deploy")
        service_cpus = plan_cpus(restarts=True).service  # replicas are killed and restart during the run
        self._say(f"deploying {self.spec.topology} ({self.spec.replica_count} replica(s))")
        self.deployed_at = time.time()
        target = self.settings.target
        options = dict(target.deploy_options(), timeout_s=self.preset.ready_timeout_s) if target.is_kubernetes else {}
        self.deployment = deploy(self.spec, platform=target.platform, workdir=self.out_dir / "deployment",
                                 cpus=service_cpus, **options)

    def _start_measuring(self, protocol: Any) -> None:
        self._enter("start-measuring")
        client_cpus = plan_cpus(restarts=True).generator
        sample = not self.settings.target.is_kubernetes  # pods run on other nodes: their CPU/RSS/GPU are not ours
        self.observers.start(self.deployment, self.out_dir, preset=self.preset, experiment=self.experiment,
                             model=self.spec.service.model, cpus=client_cpus, max_duration_s=self._max_duration_s(),
                             sample_telemetry=sample, protocol=protocol)

    def _max_duration_s(self) -> float:
        return self.preset.baseline_s + self.recovery_timeout_s * 2 + self.preset.after_s + 120.0

    def _run_experiment(self) -> None:
        from harness.chaos.toolkit import JOURNAL_FILE, LOG_FILE, resolved_configuration, run_experiment

        self._enter("experiment")
        env = {
            ENV_STATE_FILE: str(self.deployment.state_path),
            ENV_RECOVERY_TIMEOUT_S: f"{self.recovery_timeout_s:g}",
            ENV_SLO_LATENCY_MS: f"{self.slo_latency_ms:g}",
            **self.settings.target.experiment_env(self.deployment),
        }
        deploy_time = self.experiment.extension.inject == "deploy"
        self._say(f"running experiment {self.experiment.name}")
        started = time.time()
        document = self.experiment.run_document()
        self.journal = run_experiment(
            document, env=env, journal_path=self.out_dir / JOURNAL_FILE,
            log_path=self.out_dir / LOG_FILE, after_method_only=deploy_time,
        )
        self.experiment_configuration = resolved_configuration(document, env)
        self.experiment_end_s = time.time()
        from harness.chaos.result import injection_from_journal
        from harness.chaos.toolkit import journal_interrupted

        if deploy_time:
            self.injected_at = self.deployed_at
        else:
            self.injected_at, self.target_replica = injection_from_journal(self.journal)
            self.injected_at = self.injected_at or started
        if journal_interrupted(self.journal):
            self.interrupted = True

    def _timeline(self) -> list[ProbeSample]:
        path = self.out_dir / TIMELINE_FILE
        return list(read_records(path, ProbeSample)) if path.exists() else []

    def _analyze(self, end_s: float, **extra: Any):
        from harness.measure.recovery import analyze_recovery

        return analyze_recovery(
            self._timeline(), injected_at_s=self.injected_at, slo_latency_ms=self.slo_latency_ms,
            stability_window_s=self.preset.stability_s, end_s=end_s,
            baseline_s=self.preset.baseline_s if self.experiment.extension.inject == "running" else None, **extra,
        )

    def _await_recovery(self) -> None:
        self._enter("recovery")
        deadline = max(self.injected_at + self.recovery_timeout_s, self.experiment_end_s + self.preset.after_s)
        settle_s = self.preset.after_s + self.preset.stability_s
        self._say("measuring recovery")
        while not self.interrupted:
            now = time.time()
            try:
                recovery = self._analyze(now - _FLUSH_LAG_S)
            except HarnessError:
                recovery = None  # no prober sample after the injection yet
            if recovery is not None and recovery.recovered:
                settled_since = max(recovery.recovered_at_s or self.injected_at, self.experiment_end_s)
                if now - settled_since >= settle_s:
                    break
            if now >= deadline:
                break
            time.sleep(_POLL_S)
        self.end_s = time.time()

    def _finish(self) -> None:
        """Clear every fault and tear the deployment down while the measurements stop.

        The analysis window ends at ``end_s``, so what load and prober record during the teardown is
        outside it: the deployment closes in a thread while the load's last flush is waited for.
        """
        if self.end_s is None:
            self.end_s = time.time()
        closer = None
        if self.deployment is not None:
            self._say("clearing faults and tearing down")
            self._clear_faults()
            closer = threading.Thread(target=self._close_deployment, name="chaos-teardown", daemon=True)
            closer.start()
        try:
            self._stop_measuring()
        finally:
            if closer is not None:
                closer.join()

    def _stop_measuring(self) -> None:
        self.errors += self.observers.stop(flush=not self.interrupted)

    def _clear_faults(self) -> None:
        from harness.chaos import activities

        try:
            if self.settings.target.is_kubernetes:
                self.faults_cleared = self.deployment.clear_faults()
                return
            kind = self.spec.target_kind
            if kind != "reference":  # a user's server has no fault hooks to call: continue what a freeze stopped
                from harness.chaos.targets import continue_frozen, read_state_file, replicas

                for row in replicas(read_state_file(str(self.deployment.state_path))):
                    continue_frozen(row)
                    self.faults_cleared[str(row.get("name"))] = f"continued (a {kind} target has no fault hooks)"
                return
            self.faults_cleared = activities.clear_faults(str(self.deployment.state_path))
        except Exception as exc:  # the deployment is closed next either way: no process keeps a fault
            self.errors.append(f"clearing faults: {exc}")

    def _close_deployment(self) -> None:
        try:
            self.deployment.close()
        except Exception as exc:  # recorded, and the run is failed by it: a teardown must never be silent
            self.errors.append(f"tearing down: {exc}")
            self.teardown_failed = True
        finally:
            copy_events(self.deployment, self.out_dir)

    # ----- judging ----------------------------------------------------------------------------------

    def _judge(self) -> dict[str, Any]:
        from harness.chaos.behaviour import check_behaviour
        from harness.chaos.result import RESULT_FILE, build_result, drill_outputs, kill_label, serving_telemetry, token_figures
        from harness.jsonfile import write_json
        from harness.measure.sla import evaluate_fault
        from harness.measure.telemetry import TELEMETRY_FILE, read_telemetry
        from harness.platforms.base import read_events
        from harness.request_records import REQUESTS_FILE, RequestRecord

        events = read_events(self.out_dir / "events.jsonl")
        telemetry_path = self.out_dir / TELEMETRY_FILE
        sampled = self.observers.telemetry is not None  # None on Kubernetes: the pods' CPU/RSS are not ours to sample
        rows = serving_telemetry(read_telemetry(telemetry_path) if telemetry_path.exists() else [], events)
        requests_path = self.out_dir / REQUESTS_FILE
        requests = list(read_records(requests_path, RequestRecord)) if requests_path.exists() else []
        recovery = verdict = None
        findings: list[str] = []
        extension = self.experiment.extension
        if self.injected_at is not None and self.end_s is not None and self.end_s > self.injected_at:
            try:
                recovery = self._analyze(self.end_s, requests=requests, events=events)
                verdict = evaluate_fault(
                    recovery, fault=self.experiment.fault, config=self.sla, expected_alerts=extension.expect_alerts,
                    declared_faults_per_day=extension.faults_per_day, telemetry=rows if sampled else None,
                    killed_at_s=recovery.platform.get("killed_at_s"), kill_label=kill_label(recovery.platform),
                )
            except HarnessError as exc:
                self.errors.append(str(exc))
            if not self.interrupted:
                findings = check_behaviour(
                    events, extension.expect, since_s=self.injected_at, replica=self.target_replica, until_s=self.end_s
                )
        extra = {
            "deployed_at": self.deployed_at,
            "spec": self.spec.model_dump(mode="json", by_alias=True),
            **self.observers.describe(),
            "faults_cleared": self.faults_cleared,
            "target": self.settings.target.describe(),
            "platform_watch_errors": list(getattr(self.deployment, "watch_errors", []) or []),
            "slo_latency_ms": self.slo_latency_ms,
            "drills": drill_outputs(self.journal),
            "phase_s": self.phase_s,
            "errors": self.errors,
            **token_figures(requests, self.injected_at, self.end_s, self.slo_latency_ms, self.preset.baseline_s),
        }
        result = build_result(
            experiment=self.experiment.name, fault=self.experiment.fault, topology=self.spec.topology,
            profile=self.preset.name, injected_at=self.injected_at, target_replica=self.target_replica,
            recovery=recovery, verdict=verdict, tier=self.tier, journal=self.journal,
            behaviour_findings=findings, aborted=self.interrupted, phase=self.phase, extra=extra,
            configuration=self.experiment_configuration,
        )
        write_json(self.out_dir / RESULT_FILE, result)
        self._record(result)
        return result

    def _skip(self, reason: str) -> dict[str, Any]:
        from harness.chaos.fit import skipped_result
        from harness.chaos.result import RESULT_FILE
        from harness.jsonfile import write_json

        self._say(reason)
        result = skipped_result(self.experiment, topology=self.spec.topology, tier=self.tier, preset=self.preset.name,
                                reason=reason, extra={"spec": self.spec.model_dump(mode="json", by_alias=True),
                                                      "target": self.settings.target.describe(), "errors": []})
        write_json(self.out_dir / RESULT_FILE, result)
        self._record(result)
        return result

    def _record(self, result: dict[str, Any]) -> None:
        """Write run.json (the harness's run record) naming every artifact this run left."""
        from harness.results import ARTIFACT_FILES, new_run_record, save_run

        record = new_run_record(
            "chaos", inspect_torch=False, preset=self.preset.name, platform=self.settings.target.platform,
            topology=self.spec.topology,
            config={"experiment": str(self.experiment.path), "fault": self.experiment.fault, "tier": self.tier,
                    "slo_latency_ms": self.slo_latency_ms, "spec": result["spec"], "sla": self.sla.model_dump(mode="json")},
        )
        record.created_s = self.deployed_at or record.created_s
        for name in ("result", "journal", "timeline", "requests", "events", "telemetry"):
            if (self.out_dir / ARTIFACT_FILES[name]).exists():
                record.add_artifact(name, ARTIFACT_FILES[name])
        keys = ("outcome", "ttr_s", "outage_s", "unavailability_s", "availability", "failed_requests", "total_requests",
                "tier", "tier_met", "behaviour_seen")
        record.summary = {key: result.get(key) for key in keys}
        if self.interrupted:
            record.finish("aborted", f"interrupted in phase {self.phase}")
        elif self.errors and result.get("ttr_s") is None:
            record.finish("failed", "; ".join(self.errors))
        elif result["outcome"] == "not met":
            record.finish("failed", "; ".join(result["reasons"]))
        else:
            record.finish("completed", None if result["outcome"] == "met" else "; ".join(result["reasons"]))
        save_run(self.out_dir, record)
