"""The fault x topology matrix: what it runs (`MatrixPlan`) and the table of its outcomes (`MatrixTable`).

`harness.workflows.matrix.run_matrix` runs it: every cell is a full chaos run (its own deployment,
load, prober and result under ``<out>/<fault>/<topology>/``); the table (``matrix.csv`` long-form, ``matrix.md`` fault x
topology, ``matrix.json``) is written after every cell, so an interrupted matrix still leaves the
cells it finished. The comparison the table exists for: how much a topology (and the balancer's
retry) changes time to recover, availability and failed requests for the same fault.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.chaos.experiment import Experiment, experiment_files, load_experiment
from harness.chaos.presets import ChaosPreset, get_chaos_preset
from harness.config import TOPOLOGIES, load_spec_data
from harness.errors import ConfigError
from harness.platforms.target import PlatformTarget

__all__ = ["COLUMNS", "MatrixPlan", "MatrixTable", "cell_text", "default_experiments_dir", "matrix_row"]

COLUMNS = (
    "fault", "topology", "retry", "outcome", "ttr_s", "recovered", "outage_s", "unavailability_s", "availability",
    "failed_requests", "total_requests", "projected_burn", "projected_burn_high", "error_budget_s", "faults_per_period",
    "p99_ms_before", "p99_ms_during", "p99_ms_after", "tier", "tier_met", "highest_tier_met", "behaviour_seen",
    "alerts_detected", "reason", "cell_s", "error",
)


def default_experiments_dir() -> Path:
    """Return ``experiments/`` in the working directory, else the one next to the installed package."""
    here = Path("experiments")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "experiments"


def _names(text: str | None, field: str) -> list[str] | None:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(field, text, "give at least one name")
    return names


@dataclass
class MatrixPlan:
    """What the matrix runs: experiments (those for the target's platform) x topologies, under one preset."""

    experiments: list[Experiment]
    topologies: list[str]
    preset: ChaosPreset
    spec_data: dict[str, Any] | None = None
    retry: bool = False
    tier: str | None = None
    target: PlatformTarget = field(default_factory=PlatformTarget)
    sla: Any = None  # harness.measure.sla_config.SlaConfig; the defaults when None

    @classmethod
    def from_args(cls, *, faults: str | None, topologies: str | None, experiments_dir: Path | None, preset: str,
                  spec_file: Path | None, retry: bool, tier: str | None,
                  target: PlatformTarget | None = None, sla: Any = None) -> "MatrixPlan":
        """Return the plan for CLI arguments; raise ConfigError naming a bad fault, topology or file.

        ``topologies`` None means every topology locally; on Kubernetes (``target``) the only
        topology is the applied Deployment's, the spec is the target's and the experiments default
        to ``experiments/kubernetes/``.
        """
        target = target or PlatformTarget()
        if target.is_kubernetes:
            spec_file = spec_file or target.spec_path
        directory = experiments_dir or (default_experiments_dir() / "kubernetes" if target.is_kubernetes else default_experiments_dir())
        if not directory.is_dir():
            raise ConfigError("--experiments", str(directory), "not a directory")
        available = {path.stem: path for path in experiment_files(directory)}
        if not available:
            raise ConfigError("--experiments", str(directory), "holds no experiment files (*.json)")
        wanted = _names(faults, "faults") or sorted(available)
        unknown = [name for name in wanted if name not in available]
        if unknown:
            raise ConfigError("faults", unknown[0], f"no experiment {unknown[0]}.json in {directory} (have: {', '.join(sorted(available)) or 'none'})")
        experiments = [load_experiment(available[name]) for name in wanted]
        experiments = [e for e in experiments if target.platform in e.extension.platforms]
        if not experiments:
            raise ConfigError("faults", faults or str(directory), f"none of these experiments is for the {target.platform} "
                              f"platform (extensions[harness].platforms)")
        spec_data = load_spec_data(spec_file) if spec_file is not None else None
        chosen = _names(topologies, "topologies") if topologies is not None else None
        if target.is_kubernetes:
            from harness.chaos.settings import check_attachable

            for experiment in experiments:  # before any cell runs: each would fail on it
                check_attachable(experiment, retry=retry)
            applied = _applied_topology(spec_data, spec_file)
            if chosen not in (None, [applied]):
                raise ConfigError("topologies", topologies, f"on Kubernetes the matrix tests the applied Deployment, "
                                  f"which is {applied}; render and apply another spec for another topology")
            chosen = [applied]
        chosen = chosen or list(TOPOLOGIES)
        for name in chosen:
            if name not in TOPOLOGIES:
                raise ConfigError("topologies", name, f"choose from {', '.join(TOPOLOGIES)}")
        if tier is not None:
            from harness.measure.sla_config import SlaConfig

            (sla or SlaConfig()).tier(tier)  # ConfigError naming the known tiers, before any cell runs
        return cls(experiments, chosen, get_chaos_preset(preset), spec_data, retry, tier, target, sla)


def _applied_topology(spec_data: dict[str, Any] | None, spec_file: Path | None) -> str:
    """Return the topology of the applied spec; raise ConfigError (naming the file) for a bad spec."""
    from harness.chaos.experiment import merge_spec

    if spec_data is None:
        raise ConfigError("--spec", None, "the Kubernetes platform needs the applied service spec")
    try:
        return merge_spec(spec_data).topology
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.value, exc.reason, source=exc.source or str(spec_file)) from None


@dataclass
class MatrixTable:
    """The rows of a matrix run (one per cell) and how to write them."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    topologies: list[str] = field(default_factory=list)
    aborted: bool = False
    started_s: float = field(default_factory=time.time)
    retry: bool = False

    def failed_cells(self) -> list[str]:
        """Return "fault x topology: why" for each cell whose verdict is "not met" or that failed to run."""
        out = []
        for row in self.rows:
            if row.get("error"):
                out.append(f"{row['fault']} x {row['topology']}: {row['error']}")
            elif row.get("outcome") in ("not met", "error"):
                out.append(f"{row['fault']} x {row['topology']}: {row.get('reason') or 'tier ' + str(row['tier']) + ' not met'}")
        return out

    def inconclusive_cells(self) -> list[str]:
        """Return "fault x topology: why" for each cell whose data could not support a verdict."""
        return [f"{row['fault']} x {row['topology']}: {row.get('reason')}" for row in self.rows
                if not row.get("error") and row.get("outcome") == "inconclusive"]

    def write(self, out_dir: Path) -> None:
        """Write matrix.csv, matrix.md and matrix.json into ``out_dir``."""
        from harness.jsonfile import write_json

        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "matrix.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
        (out_dir / "matrix.md").write_text(self.markdown() + "\n", encoding="utf-8")
        write_json(out_dir / "matrix.json", {"rows": self.rows, "aborted": self.aborted, "retry": self.retry,
                                             "duration_s": time.time() - self.started_s})

    def markdown(self) -> str:
        """Return the fault x topology table: each cell "TTR / availability / failed of total / tier met"."""
        faults = list(dict.fromkeys(row["fault"] for row in self.rows))
        header = "| fault | " + " | ".join(self.topologies) + " |"
        lines = [header, "|---|" + "---|" * len(self.topologies)]
        for fault in faults:
            cells = []
            for topology in self.topologies:
                row = next((r for r in self.rows if r["fault"] == fault and r["topology"] == topology), None)
                cells.append(cell_text(row))
            lines.append(f"| {fault} | " + " | ".join(cells) + " |")
        note = (f"Each cell: TTR / client-side outage / unavailability / failed of total requests / projected burn of "
                f"the tier's error budget / verdict for the tier (met, NOT met, inconclusive). Balancer retry "
                f"{'on' if self.retry else 'off'}. {len(self.rows)} cells in {time.time() - self.started_s:.0f} s"
                f"{' (interrupted)' if self.aborted else ''}.")
        return "\n".join(lines + ["", note])


def _seconds(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def cell_text(row: dict[str, Any] | None) -> str:
    """Return one cell as matrix.md and the progress lines show it (TTR / outage / ... / tier verdict)."""
    if row is None:
        return "not run"
    if row.get("error"):
        return f"error: {row['error'][:60]}"
    if row.get("outcome") == "skipped":
        return str(row.get("reason") or "skipped")  # "skipped on a command target: ..."
    ttr = "not recovered" if not row.get("recovered") else f"TTR {_seconds(row.get('ttr_s'))}"
    burn = row.get("projected_burn")
    burn_text = "n/a" if burn is None else f"burn {burn:.2%}"
    verdict = {"met": "met", "not met": "NOT met", "inconclusive": "inconclusive"}.get(str(row.get("outcome")), str(row.get("outcome")))
    return (f"{ttr} / outage {_seconds(row.get('outage_s'))} / unavailable {_seconds(row.get('unavailability_s'))} / "
            f"{row.get('failed_requests')} of {row.get('total_requests')} / {burn_text} / {row['tier']} {verdict}")


def matrix_row(result: dict[str, Any], cell_s: float, retry: bool) -> dict[str, Any]:
    """Return the table row of one cell's ``result.json`` (its budget and alert checks flattened)."""
    row = {key: result.get(key) for key in COLUMNS if key in result}
    budget = result.get("budget") or {}
    row.update({key: budget.get(name) for key, name in (("projected_burn", "projected_burn"),
                                                         ("projected_burn_high", "projected_burn_high"),
                                                         ("error_budget_s", "error_budget_s"),
                                                         ("faults_per_period", "faults_per_period"))})
    detected = [c for c in result.get("alert_checks") or [] if c.get("status") == "detected"]
    row["alerts_detected"] = "; ".join(f"{c['name']} (lead {c['lead_s']:.1f} s)" if c.get("lead_s") is not None
                                       else c["name"] for c in detected) or None
    row["reason"] = "; ".join(result.get("reasons") or []) or None
    row.update({"cell_s": round(cell_s, 1), "retry": retry, "error": "; ".join(result.get("errors") or []) or None})
    if result.get("aborted"):
        row["error"] = "interrupted"
    return row
