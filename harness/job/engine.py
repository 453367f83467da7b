"""The main job's engine: run stages in order, isolate failures, keep time, survive Ctrl-C, record it all.

A `Job` runs a list of `Stage`s (name, budget, a function of the `JobContext`). Each stage ends as
one `StageResult`:

- ``completed``: it ran to the end; its ``verdict`` is ``pass``, ``fail`` or None (not judged);
- ``failed``: it raised (its error is the ``reason``); the job goes on with the next stage;
- ``skipped``: it did not run (a stage it needs did not complete, or the job was interrupted);
- ``aborted``: SIGINT/SIGTERM arrived while it ran; what it finished is kept.

A stage whose outcome says ``stop`` (preflight missing a requirement) ends the job early. After an
interrupt only stages marked ``always`` (the report) still run, with further signals held off so
the report of what finished is written whole. Held resources (a deployment) are released when the
stage that needs them is done, when a stage fails or aborts, and at the end, whatever happened.

Exit codes (`harness.job.outcomes.exit_code_for`): 0 every stage completed and every verdict
passed; 1 a verdict failed (an SLA tier, a regression, a preflight requirement); 3 a stage could not
run; 130 interrupted. Bad input is rejected (exit 2) before any stage starts, by the caller.
"""

from __future__ import annotations

import time
import traceback
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError, VerdictFailed
from harness.job.outcomes import (
    ABORTED, COMPLETED, EXIT_INTERRUPTED, FAIL, FAILED, PASS, SKIPPED, JobResult, StageOutcome, StageResult,
    exit_code_for, format_clock, verdict_word,
)
from harness.platforms.target import PlatformTarget
from harness.signals import INTERRUPTS, interrupting, on_signals

__all__ = ["Stage", "JobContext", "Job"]

ERRORS_FILE = "job-errors.log"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Stage:
    """One step of the job; ``needs``: stages that must have completed first; ``always``: runs after an
    interrupt; ``skip_reason``: the stage does not apply here (recorded as skipped, with this reason)."""

    name: str
    run: Callable[["JobContext"], StageOutcome]
    budget_s: float
    needs: tuple[str, ...] = ()
    always: bool = False
    skip_reason: str | None = None


class JobContext:
    """What stages share: the preset, the output directory, progress, the baseline and held resources."""

    def __init__(self, preset: Any, out_dir: Path, record: Any, *, baseline: Path | None, progress: Progress,
                 target: PlatformTarget | None = None) -> None:
        self.preset = preset
        self.target = target or PlatformTarget()  # local (deploy here) or kubernetes (attach to the applied service)
        self.out_dir = out_dir
        self.record = record
        self.baseline = baseline
        self.results: dict[str, StageResult] = {}
        self.interrupted = False
        self._say = progress
        self.values: dict[str, Any] = {}  # what stages hand on (a deployment, the report's paths)
        self.sla: Any = None  # harness.measure.sla_config.SlaConfig for the chaos verdicts; None: the defaults
        self._held: dict[str, Callable[[], None]] = {}

    def say(self, message: str) -> None:
        """Report progress of the running stage (one line on the terminal)."""
        self._say(message)

    def hold(self, name: str, value: Any, release: Callable[[], None]) -> None:
        """Keep ``value`` for later stages; ``release()`` runs when it is released (at the latest at the end)."""
        self.values[name] = value
        self._held[name] = release

    def get(self, name: str) -> Any:
        """Return a value an earlier stage handed on; raise HarnessError when none did."""
        if name not in self.values:
            raise HarnessError(f"no {name} was provided by an earlier stage")
        return self.values[name]

    def release(self, name: str) -> None:
        """Release one held value (idempotent); errors propagate."""
        self.values.pop(name, None)
        release = self._held.pop(name, None)
        if release is not None:
            release()

    def release_all(self) -> list[str]:
        """Release everything held, newest first; return the errors (one failing release does not stop the rest)."""
        errors = []
        for name in reversed(list(self._held)):
            try:
                self.release(name)
            except Exception as exc:  # noqa: BLE001 - every resource must get its chance to be released
                errors.append(f"releasing {name}: {type(exc).__name__}: {exc}")
        return errors


class Job:
    """Runs ``stages`` in order into ``out_dir`` (see the module docstring); `run` returns the JobResult."""

    def __init__(self, preset: Any, out_dir: Path, record: Any, stages: list[Stage], *,
                 progress: Progress | None = None, baseline: Path | None = None,
                 save: Callable[[Any], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 target: PlatformTarget | None = None) -> None:
        self.preset = preset
        self.out_dir = Path(out_dir)
        self.record = record
        self.stages = list(stages)
        self.progress = progress or (lambda line: None)
        self.save = save or (lambda record: None)
        self.clock = clock
        self.started = clock()
        self.current: Stage | None = None
        self.stage_started = self.started
        self._stopped = False
        self.context = JobContext(preset, self.out_dir, record, baseline=baseline, progress=self._stage_say, target=target)

    # ----- progress ---------------------------------------------------------------------------------

    def eta_s(self) -> float:
        """Return the seconds left by the budgets: the rest of the current stage plus every stage not yet run."""
        left = 0.0
        for stage in self.stages:
            if stage.name in self.context.results:
                continue
            if stage is self.current:
                left += max(0.0, stage.budget_s - (self.clock() - self.stage_started))
            else:
                left += stage.budget_s
        return left

    def _line(self, stage: str, message: str) -> None:
        elapsed = self.clock() - self.started
        line = f"[{format_clock(elapsed)} | ETA {format_clock(self.eta_s())}] {stage}: {message}"
        try:
            self.progress(line)
        except Exception:  # noqa: BLE001 - a failing progress display must never break the run
            pass

    def _stage_say(self, message: str) -> None:
        self._line(self.current.name if self.current else "job", message)

    # ----- signals ----------------------------------------------------------------------------------

    def _signals(self, hold: bool) -> AbstractContextManager[None]:
        """Return a context manager under which SIGINT and SIGTERM raise KeyboardInterrupt (``hold``: only
        note them); the old handlers come back after it."""
        if hold:  # teardown or the report is being written: finish it first
            return on_signals(INTERRUPTS, lambda _signum, _frame: self._note_interrupt())
        return interrupting(before=self._note_interrupt)

    def _note_interrupt(self) -> None:
        self.context.interrupted = True

    # ----- running ----------------------------------------------------------------------------------

    def run(self) -> JobResult:
        """Run every stage; return the JobResult. Never raises for a stage's failure; records everything."""
        self._stopped = False
        with self._signals(hold=False):
            for stage in self.stages:
                try:
                    self._step(stage)
                except KeyboardInterrupt:  # between stages (saving run.json, a progress line)
                    self.context.interrupted = True
                    if stage.name not in self.context.results:
                        self._skip(stage, "the job was interrupted")
        with self._signals(hold=True):
            self._release()
            return self._finish()

    def _step(self, stage: Stage) -> None:
        if self._stopped or (self.context.interrupted and not stage.always):
            why = "the job was interrupted" if self.context.interrupted else "the job stopped early (preflight)"
            self._skip(stage, why)
            return
        if stage.skip_reason:
            self._skip(stage, stage.skip_reason)
            return
        missing = [n for n in stage.needs if self.context.results.get(n, StageResult(n, SKIPPED, 0)).status != COMPLETED]
        if missing:
            self._skip(stage, f"needs {', '.join(missing)}, which did not complete")
            return
        if stage.always:
            self._release()
            with self._signals(hold=True):
                result = self._run_stage(stage)
        else:
            result = self._run_stage(stage)
            if result.status != COMPLETED or not self._needed_later(stage):
                self._release()
        self._stopped = self._stopped or result.stopped_job
        if result.status == ABORTED:
            self.context.interrupted = True

    def _needed_later(self, stage: Stage) -> bool:
        """Whether a later stage needs ``stage`` (and so what it holds, such as a deployment)."""
        later = self.stages[self.stages.index(stage) + 1:]
        return any(stage.name in s.needs for s in later)

    def _release(self) -> None:
        with self._signals(hold=True):
            for error in self.context.release_all():
                self._line("job", error)
                self._log_error("release", error)

    def _skip(self, stage: Stage, reason: str) -> None:
        result = StageResult(stage.name, SKIPPED, stage.budget_s, reason=reason)
        self.context.results[stage.name] = result
        self._line(stage.name, f"skipped: {reason}")
        self._record()

    def _run_stage(self, stage: Stage) -> StageResult:
        self.current, self.stage_started = stage, self.clock()
        self._line(stage.name, f"started (budget {format_clock(stage.budget_s)})")
        result = StageResult(stage.name, COMPLETED, stage.budget_s)
        interrupted_before = self.context.interrupted
        try:
            outcome = stage.run(self.context)
            result.verdict, result.findings, result.summary = outcome.verdict, list(outcome.findings), dict(outcome.summary)
            result.path, result.reason = outcome.path, outcome.reason
            result.stopped_job = outcome.stop
            # a signal noted (not raised) while an `always` stage ran does not undo its finished work
            newly_interrupted = self.context.interrupted and not interrupted_before and not stage.always
            if outcome.aborted or newly_interrupted:
                result.status, result.reason = ABORTED, outcome.reason or "interrupted (SIGINT/SIGTERM)"
        except KeyboardInterrupt:
            self.context.interrupted = True
            result.status, result.reason = ABORTED, "interrupted (SIGINT/SIGTERM)"
        except VerdictFailed as exc:  # the stage ran; its verdict is the failure
            result.verdict, result.findings = FAIL, list(exc.findings) or [str(exc)]
            result.reason = str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - errors become data: one failed stage must not end the job
            result.status, result.reason = FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0]
            if not isinstance(exc, HarnessError):
                self._log_error(stage.name, traceback.format_exc())
        result.elapsed_s = self.clock() - self.stage_started
        result.over_budget = result.elapsed_s > stage.budget_s
        self.context.results[stage.name] = result
        self.current = None
        self._line(stage.name, self._ending(result))
        self._record()
        return result

    @staticmethod
    def _ending(result: StageResult) -> str:
        took = f"{format_clock(result.elapsed_s)} (budget {format_clock(result.budget_s)}"
        took += ", OVER BUDGET)" if result.over_budget else ")"
        if result.status == COMPLETED:
            verdict = {PASS: ", verdict pass", FAIL: ", verdict FAIL", None: ""}[result.verdict]
            text = f"completed in {took}{verdict}"
            shown = result.findings[:8]
            extra = f"\n    ... and {len(result.findings) - 8} more" if len(result.findings) > 8 else ""
            return text + "".join(f"\n    - {f}" for f in shown) + extra if result.verdict == FAIL else text
        return f"{result.status.upper()} after {took}: {result.reason}"

    def _log_error(self, where: str, text: str) -> None:
        try:
            with open(self.out_dir / ERRORS_FILE, "a", encoding="utf-8") as handle:
                handle.write(f"--- {where} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n{text.rstrip()}\n")
            if "errors" not in self.record.artifacts:
                self.record.add_artifact("errors", ERRORS_FILE)
        except OSError:
            pass  # the error is on the terminal already; a full disk must not turn it into a crash

    def results(self) -> list[StageResult]:
        """Return the results so far, in stage order."""
        return [self.context.results[s.name] for s in self.stages if s.name in self.context.results]

    def _record(self) -> None:
        self.record.summary = {**self.record.summary, "stages": {r.name: r.to_dict() for r in self.results()},
                               "elapsed_s": round(self.clock() - self.started, 2)}
        parts = dict(self.record.parts)
        for result in self.results():
            if result.path and (self.out_dir / result.path / "run.json").is_file():
                parts[result.name] = result.path
        self.record.parts = parts
        try:
            self.save(self.record)
        except Exception as exc:  # noqa: BLE001 - run.json is rewritten at the end; a failed save is shown
            self._line("job", f"could not save run.json: {exc}")

    def _finish(self) -> JobResult:
        results = self.results()
        code = exit_code_for(results, interrupted=self.context.interrupted)
        verdict = verdict_word(code)
        failed = [f"{r.name}: {r.reason}" for r in results if r.status == FAILED]
        report = self.context.values.get("report_paths")
        self.record.summary = {**self.record.summary, "verdict": verdict, "exit_code": code}
        if code == EXIT_INTERRUPTED:
            self.record.finish("aborted", "interrupted (SIGINT/SIGTERM); the report covers what finished")
        elif failed or any(r.stopped_job for r in results):
            reasons = failed or [f"{r.name}: {'; '.join(r.findings)}" for r in results if r.stopped_job]
            self.record.finish("failed", "; ".join(reasons))
        else:
            self.record.finish("completed")
        self._record()
        return JobResult(self.record.run_id, self.out_dir, getattr(self.preset, "name", str(self.preset)), results,
                         report, verdict, code, self.clock() - self.started)
