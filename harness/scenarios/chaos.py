"""Chaos scenarios: which fault x topology cells a preset runs, one cell's run, and what it must show.

`resilience_cases(preset)` lists the cells: ``nightly`` every local experiment in ``experiments/``
on every topology; ``smoke`` the main job's reduced matrix (`harness.job.presets.SMOKE_FAULTS` x
`SMOKE_TOPOLOGIES`, see `SMOKE_MATRIX_NOTE` for why), so a ``harness run smoke`` output and a
scenario run are each other's baselines and replays. With ``--harness-spec`` (a team's own server) the
cells are the main job's against it (`harness.job.chaosplan`: the faults that need nothing from the
server, or for an OpenAI-compatible one the LLM profile of ``experiments/llm/``), a cell its target
cannot take skipped with the reason.

A cell is judged as `harness.measure.sla` defines: the fault's cost against the tier's error
budget, its recovery time against the tier's maximum, and the alerts it should (and should not)
raise. A cell whose data cannot support a verdict is skipped as inconclusive, with the reasons. One
kind of cell cannot meet its tier by construction, and its case says so (``expected_miss``) so the
suite fails only on news: a fault whose experiment claims the service never becomes Ready again
(``expect.absent`` names Ready: ``slow-startup`` without a startup probe crash-loops by design).

`ChaosScenario.inject` runs one cell through `harness.workflows.chaos.ChaosRun` (deploy, load,
prober, the experiment through chaoslib, recovery, teardown) into the session's
``chaos/<experiment>/<topology>`` part; `ChaosOutcome` holds the result and the expectations.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.scenarios.session import Inconclusive, NotApplicable, ScenarioFailed, ScenarioSession, expect_none

__all__ = [
    "CHAOS_DIR",
    "FaultCase",
    "BehaviourNotSeen",
    "SlaNotMet",
    "resilience_cases",
    "ChaosScenarios",
    "ChaosScenario",
    "ChaosOutcome",
    "write_matrix",
]

CHAOS_DIR = "chaos"
RESULT_FILE = "result.json"
NEVER_READY_MISS = "the experiment claims the service never becomes Ready again ({summary})"

log = logging.getLogger("harness.scenarios")


class BehaviourNotSeen(ScenarioFailed):
    """The platform did not react as the fault claims (events missing, out of order, or forbidden ones seen)."""


class SlaNotMet(ScenarioFailed):
    """The SLA tier was not met; the message lists every violation."""


@dataclass(frozen=True)
class FaultCase:
    """One cell of the resilience matrix; ``expected_miss`` says why its tier cannot be met (or None)."""

    experiment: str
    topology: str
    expected_miss: str | None = None

    @property
    def id(self) -> str:
        return f"{self.experiment}-{self.topology}"

    def __str__(self) -> str:
        return self.id


def _experiments_dir(directory: str | Path | None) -> Path:
    from harness.chaos.matrix import default_experiments_dir

    return Path(directory) if directory is not None else default_experiments_dir()


def _experiment_file(directory: str | Path | None, name: str) -> Path:
    """Return experiment ``name``'s file: in the experiments folder, else in its LLM experiments' (``llm/``)."""
    from harness.job.chaosplan import LLM_EXPERIMENTS

    folder = _experiments_dir(directory)
    path, llm = folder / f"{name}.json", folder / LLM_EXPERIMENTS / f"{name}.json"
    return llm if not path.exists() and llm.exists() else path


def _spec_cases(preset: str, spec: Path) -> list[FaultCase]:
    """Return the cells the main job's chaos stage runs against ``spec`` (`harness.job.chaosplan`: a team's
    server's faults, or the LLM profile for a generative one)."""
    from harness.job.chaosplan import chaos_plan
    from harness.job.presets import get_job_preset
    from harness.job.stages import own_spec
    from harness.platforms.target import PlatformTarget

    target = PlatformTarget.resolve("local", spec=spec)
    plan, _ = chaos_plan(get_job_preset(preset), target, None, own_spec(target))
    return [FaultCase(e.name, t) for e in plan.experiments for t in plan.topologies if t in e.extension.topologies]


def resilience_cases(preset: str, experiments_dir: str | Path | None = None, platform: str = "local",
                     spec: Path | None = None) -> list[FaultCase]:
    """Return the fault x topology cells ``preset`` runs on ``platform``, experiments read from ``experiments_dir``;
    with a ``spec`` of a team's own, the main job's cells against it.

    Raises ConfigError for an unknown preset or an invalid experiment file (naming the field).
    """
    from harness.chaos.experiment import experiment_files, load_experiment
    from harness.config import TOPOLOGIES
    from harness.errors import ConfigError
    from harness.job.presets import SMOKE_FAULTS, SMOKE_TOPOLOGIES

    if preset not in ("smoke", "nightly"):
        raise ConfigError("preset", preset, "choose one of smoke, nightly")
    if spec is not None and platform == "local":
        return _spec_cases(preset, spec)
    files = {path.stem: path for path in experiment_files(_experiments_dir(experiments_dir))}
    names = sorted(files) if preset == "nightly" else [name for name in SMOKE_FAULTS if name in files]
    topologies = TOPOLOGIES if preset == "nightly" else SMOKE_TOPOLOGIES
    cases = []
    for name in names:
        experiment = load_experiment(files[name], validate=False)  # chaoslib validates when the cell runs
        if platform not in experiment.extension.platforms:
            continue
        never_ready = "Ready" in experiment.extension.expect.absent
        for topology in (t for t in topologies if t in experiment.extension.topologies):  # a drill names its own
            miss = NEVER_READY_MISS.format(summary=experiment.extension.summary or name) if never_ready else None
            cases.append(FaultCase(name, topology, miss))
    return cases


@dataclass
class ChaosOutcome:
    """The result of one chaos cell (``result.json`` of `harness.chaos.result.build_result`) and its checks."""

    result: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return f"{self.result.get('experiment')} on {self.result.get('topology')}"

    @property
    def violations(self) -> list[str]:
        """Why the cell is not met (empty when it is met or inconclusive)."""
        return list(self.result.get("violations") or [])

    def expect_behaviour(self) -> None:
        """Raise BehaviourNotSeen listing every finding when the platform did not behave as the fault claims."""
        findings = list(self.result.get("behaviour_findings") or [])
        if not self.result.get("activities") and not self.result.get("aborted"):
            findings.insert(0, f"the experiment's method never ran (journal status {self.result.get('journal_status')}): "
                               f"{self._why_not_injected()}")
        if self.result.get("aborted"):
            findings.append(f"the run was aborted in phase {self.result.get('phase')!r}")
        if not findings and not self.result.get("behaviour_seen"):
            findings.append("behaviour not judged: " + "; ".join(self.result.get("errors") or ["no measurement"]))
        expect_none(findings, f"{self.name}: the platform did not behave as {self.result.get('fault')} claims",
                    BehaviourNotSeen)

    def _why_not_injected(self) -> str:
        """Return the failed steady-state probes before the method, from journal.json (where it was kept)."""
        from harness.jsonfile import read_json

        path = self.path / "journal.json"
        journal = read_json(path) if path.exists() else {}
        before = ((journal.get("steady_states") or {}).get("before") or {}) if isinstance(journal, dict) else {}
        failed = [(p.get("activity") or {}).get("name", "?") for p in before.get("probes") or [] if not p.get("tolerance_met", True)]
        if before.get("steady_state_met") is False:
            return f"the steady-state hypothesis did not hold before the fault (failed: {', '.join(failed) or 'n/a'})"
        return "see journal.json and chaostoolkit.log"

    def expect_tier(self) -> None:
        """Return when the tier is met; raise SlaNotMet listing EVERY reason (budget, recovery, alert checks)
        when it is not met (or nothing could be measured), Inconclusive when the data cannot tell."""
        outcome = self.result.get("outcome")
        if outcome == "met":
            return
        reasons = list(self.result.get("reasons") or [])
        if outcome == "inconclusive":
            raise Inconclusive(f"{self.name}: SLA tier {self.result.get('tier')}", reasons)
        findings = reasons or [f"the run ended in phase {self.result.get('phase')!r} without a verdict"]
        raise SlaNotMet(f"{self.name}: SLA tier {self.result.get('tier')} {outcome or 'not met'}", findings)


class ChaosScenario:
    """Given: one experiment on one topology under the preset's load, judged against ``tier``."""

    def __init__(self, session: ScenarioSession, experiment: str, topology: str, *, tier: str | None = None) -> None:
        from harness.chaos.experiment import load_experiment
        from harness.chaos.presets import get_chaos_preset
        from harness.chaos.settings import ChaosRunSettings
        from harness.config import TOPOLOGIES, load_spec_data
        from harness.errors import ConfigError

        if topology not in TOPOLOGIES:
            raise ConfigError("topology", topology, f"choose one of {', '.join(TOPOLOGIES)}")
        self.session = session
        self.topology = topology
        self.experiment = load_experiment(_experiment_file(session.options.experiments_dir, experiment))
        self.relative = f"{CHAOS_DIR}/{experiment}/{topology}"
        self.settings = ChaosRunSettings(
            experiment=self.experiment, topology=topology, preset=get_chaos_preset(session.options.preset),
            tier=tier or session.options.tier,
            spec_data=load_spec_data(session.options.spec) if session.options.spec is not None else None,
        )

    @property
    def spec(self) -> Any:
        """The service spec the cell deploys (preset base, the experiment's overlay, the topology)."""
        return self.settings.spec()

    def inject(self) -> ChaosOutcome:
        """Deploy, load, inject the fault, measure recovery, tear down; return the outcome.

        Raises NotApplicable off the local platform (chaos runs drive local deployments), HarnessError
        when the run cannot start (nothing Ready), ConfigError for an invalid experiment.
        """
        from harness.chaos.fit import OUTCOME_SKIPPED
        from harness.jsonfile import read_json
        from harness.scenarios.perf import run_context
        from harness.workflows.chaos import ChaosRun

        if self.session.options.platform != "local" and not self.session.replaying:
            raise NotApplicable("harness.chaos runs cells on the local platform only; on Kubernetes run "
                                "experiments/kubernetes/ with `chaos run` against the cluster")
        path = self.session.part_dir(self.relative, unique=False)
        started = time.monotonic()
        if self.session.replaying:
            result = read_json(path / RESULT_FILE)
        else:
            log.info("chaos %s x %s: starting", self.experiment.name, self.topology)
            context = run_context(self.session, path, progress=lambda line: log.info("chaos: %s", line))
            result = ChaosRun(self.settings, context).execute()
        summary = {k: result.get(k) for k in ("outcome", "ttr_s", "outage_s", "unavailability_s", "tier", "tier_met")}
        self.session.save_part(path, "chaos", topology=self.topology, config={"experiment": self.experiment.name},
                               summary={**summary, "cell_s": round(time.monotonic() - started, 1)},
                               status="aborted" if result.get("aborted") else "completed")
        if result.get("outcome") == OUTCOME_SKIPPED:  # a fault the target cannot take (harness.chaos.fit)
            raise NotApplicable(f"{self.experiment.name} on {self.topology}: {'; '.join(result.get('reasons') or [])}")
        return ChaosOutcome(result, path)


class ChaosScenarios:
    """The ``chaos`` fixture: prepares cells of the session's preset."""

    def __init__(self, session: ScenarioSession) -> None:
        self.session = session

    def prepare(self, experiment: str, *, topology: str, tier: str | None = None) -> ChaosScenario:
        """Return the cell ``experiment`` x ``topology`` ready to inject; raise ConfigError for bad names."""
        return ChaosScenario(self.session, experiment, topology, tier=tier)


def write_matrix(session: ScenarioSession) -> Path | None:
    """Write ``chaos/matrix.csv`` (and .md, .json) from every cell the session ran; return its directory, or None."""
    from harness.chaos.matrix import MatrixTable, matrix_row
    from harness.config import TOPOLOGIES
    from harness.jsonfile import read_json

    root = session.run_dir / CHAOS_DIR
    rows = []
    for path in sorted(root.glob(f"*/*/{RESULT_FILE}")) if root.is_dir() else []:
        result = read_json(path)
        part = path.parent / "run.json"
        cell_s = (read_json(part).get("summary") or {}).get("cell_s") if part.exists() else None
        retry = bool(((result.get("spec") or {}).get("balancer") or {}).get("retry_on_connect_error"))
        rows.append(matrix_row(result, cell_s or 0.0, retry))
    if not rows:
        return None
    seen = {row["topology"] for row in rows}
    # the table says how long its cells took: their own wall times, so a replay reports the original run's
    MatrixTable(rows=rows, topologies=[t for t in TOPOLOGIES if t in seen],
                started_s=time.time() - sum(row.get("cell_s") or 0.0 for row in rows)).write(root)
    return root
