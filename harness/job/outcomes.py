"""How a stage and the main job end: the statuses, verdicts, results and the job's exit code.

A stage ends ``completed`` (verdict ``pass``, ``fail`` or none), ``failed`` (it raised), ``skipped``
or ``aborted`` (interrupted); `exit_code_for` turns the stage results into the job's exit code (see
`harness.job.engine`, which runs the stages, for the rules).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import EXIT_OK, EXIT_RUNTIME, EXIT_VERDICT_FAILED

__all__ = [
    "COMPLETED", "FAILED", "SKIPPED", "ABORTED", "PASS", "FAIL", "EXIT_INTERRUPTED",
    "StageOutcome", "StageResult", "JobResult", "exit_code_for", "verdict_word", "format_clock",
]

COMPLETED, FAILED, SKIPPED, ABORTED = "completed", "failed", "skipped", "aborted"
PASS, FAIL = "pass", "fail"
EXIT_INTERRUPTED = 130  # as every other long-running harness command


@dataclass
class StageOutcome:
    """What a stage function returns: its verdict, why, headline figures and where its files are."""

    verdict: str | None = None  # PASS, FAIL or None (nothing to judge)
    findings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # its output directory, relative to the job's
    aborted: bool = False  # it caught an interrupt itself and returned what finished
    stop: bool = False  # the job must not go on (a preflight requirement is not met)
    reason: str | None = None


@dataclass
class StageResult:
    """How one stage ended (see the module docstring for the statuses)."""

    name: str
    status: str
    budget_s: float
    verdict: str | None = None
    reason: str | None = None
    findings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    elapsed_s: float = 0.0
    over_budget: bool = False
    stopped_job: bool = False  # its outcome ended the job early

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (recorded in run.json's summary)."""
        data = asdict(self)
        data["elapsed_s"] = round(self.elapsed_s, 2)
        return data


@dataclass
class JobResult:
    """The whole job: every stage's result, the report's paths, the overall verdict and exit code."""

    run_id: str
    out_dir: Path
    preset: str
    stages: list[StageResult]
    report: dict[str, Path] | None
    verdict: str  # pass | fail | incomplete | aborted
    exit_code: int
    elapsed_s: float

    def stage(self, name: str) -> StageResult:
        """Return the result of stage ``name``; KeyError if the job has no such stage."""
        for result in self.stages:
            if result.name == name:
                return result
        raise KeyError(name)


def format_clock(seconds: float) -> str:
    """Return ``seconds`` as m:ss (h:mm:ss past an hour)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def exit_code_for(results: list[StageResult], *, interrupted: bool) -> int:
    """Return the job's exit code from its stage results (see the module docstring for the order)."""
    if interrupted or any(r.status == ABORTED for r in results):
        return EXIT_INTERRUPTED
    if any(r.stopped_job for r in results):
        return EXIT_VERDICT_FAILED
    if any(r.status == FAILED for r in results):
        return EXIT_RUNTIME
    if any(r.verdict == FAIL for r in results):
        return EXIT_VERDICT_FAILED
    return EXIT_OK


def verdict_word(code: int) -> str:
    """Return the job's verdict for its exit code: pass, fail, aborted or incomplete."""
    return {EXIT_OK: "pass", EXIT_VERDICT_FAILED: "fail", EXIT_INTERRUPTED: "aborted"}.get(code, "incomplete")
