"""The main job: `harness run smoke|nightly` as a plain function, for the CLI and the pytest plugin.

    from harness.job import run_job
    result = run_job("smoke", Path("reports/nightly-1"), progress=print)
    result.exit_code, result.verdict, result.report["html"], result.stage("chaos").status

Stages, in order: preflight, deploy, load, chaos (the fault x topology matrix), sweep, capacity,
report. Output layout under the job's directory: ``run.json`` (kind "run", its ``parts``),
``preflight.json``, ``load/``, ``chaos/`` (matrix.csv, matrix.md, one directory per cell),
``sweep/`` (sweep.csv, sweep_summary.json), ``capacity/`` (capacity.json), then ``report.html``,
``report.md`` and ``summary.json``. See `harness.job.engine` for statuses and exit codes and
`harness.job.presets` for what each preset runs and its budgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import ConfigError
from harness.job.engine import Job, Stage
from harness.job.outcomes import (
    ABORTED, COMPLETED, EXIT_INTERRUPTED, FAIL, FAILED, PASS, SKIPPED, JobResult, StageOutcome, StageResult, format_clock,
)
from harness.job.presets import JOB_PRESETS, STAGES, JobPreset, get_job_preset
from harness.paths import resolve_path
from harness.platforms.target import PlatformTarget

__all__ = [
    "run_job", "validate_job_inputs", "JobResult", "StageResult", "Stage", "StageOutcome", "JobPreset",
    "JOB_PRESETS", "STAGES", "get_job_preset", "COMPLETED", "FAILED", "SKIPPED", "ABORTED", "PASS", "FAIL",
    "EXIT_INTERRUPTED",
]


def validate_job_inputs(out_dir: Path | None, baseline: Path | None) -> None:
    """Raise ConfigError (exit 2) for an output directory holding a run already or a baseline that is not a run."""
    from harness.results import RUN_FILE

    if out_dir is not None:
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError("--out", str(out_dir), "exists and is not a directory")
        if (out / RUN_FILE).exists():
            raise ConfigError("--out", str(out_dir), f"already holds a run ({RUN_FILE}); choose a new directory")
    if baseline is not None and not (Path(baseline) / RUN_FILE).is_file():
        raise ConfigError("--baseline", str(baseline), f"not a saved run directory (no {RUN_FILE})")


def run_job(
    profile: str | JobPreset,
    out_dir: str | Path | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    baseline: str | Path | None = None,
    stages: Sequence[Stage] | None = None,
    command: list[str] | None = None,
    target: PlatformTarget | None = None,
    sla: Any = None,
) -> JobResult:
    """Run the main job of ``profile`` into ``out_dir`` (default ``reports/<run-id>``); return the JobResult.

    ``out_dir`` and ``baseline`` are resolved against the current directory first (`harness.paths`).

    ``target`` is where the service runs: local (default: each stage deploys its own) or an applied
    Kubernetes Deployment that the stages attach to (sweep and capacity are then skipped, saying why).
    ``sla`` (a `harness.measure.sla_config.SlaConfig`) judges the chaos cells (default: its defaults).
    ``progress`` gets one line per event (stage, elapsed, ETA from the budgets). ``stages`` replaces
    the real stages (tests). A stage's failure or an interrupt is recorded, not raised: read
    ``result.exit_code``. Raises ConfigError (exit 2) for an unknown profile, an empty path, an output
    directory that already holds a run, or a baseline that is not a saved run.
    """
    from harness.job.stages import default_stages
    from harness.results import new_run_record, save_run

    job_preset = get_job_preset(profile) if isinstance(profile, str) else profile
    target = target or PlatformTarget()
    # absolute from here on: stages hand these directories to child processes
    out_dir = resolve_path(out_dir, "out_dir") if out_dir is not None else None
    baseline = resolve_path(baseline, "baseline") if baseline is not None else None
    validate_job_inputs(out_dir, baseline)
    say = progress or (lambda line: None)
    say(f"harness run {job_preset.name}: {job_preset.description}; fingerprinting the environment")
    record = new_run_record("run", command=command, preset=job_preset.name, platform=target.platform,
                            config={"job_preset": job_preset.to_dict(), "target": target.describe(),
                                    "baseline": str(baseline) if baseline is not None else None})
    out = out_dir if out_dir is not None else resolve_path(Path("reports") / record.run_id, "out_dir")
    validate_job_inputs(out, None)
    save_run(out, record)
    chosen = list(stages) if stages is not None else default_stages(job_preset, target)
    budget = sum(stage.budget_s for stage in chosen)
    say(f"run {record.run_id} into {out}; stages {', '.join(s.name for s in chosen)}; budget {format_clock(budget)}")
    job = Job(job_preset, out, record, chosen, progress=say, baseline=baseline,
              save=lambda rec: save_run(out, rec), target=target)
    job.context.sla = sla
    return job.run()
