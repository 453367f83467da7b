"""The sweep loop: per configuration deploy once, pre-check, each load level's windows until stable,
then the configuration's max-rate search; ``sweep.csv`` row by row and ``sweep_summary.json``.

Each point is measured by `harness.sweep.points`, each max rate found by `harness.sweep.maxrate`,
through the backend protocol there (fakes in tests, `harness.sweep.local` for real). A point that
cannot finish in its wall-clock bound (``point_budget_s``) by the pre-check's estimate is recorded
``skipped`` with the numbers; one that runs out of time anyway ``timeout`` with what it had. On
SIGINT the current deployment is torn down (context managers), the rows written so far stay, the
points not run are recorded ``interrupted``, and the summary is written. The sweep workflow
(`harness.workflows.sweep.run_sweep`) wraps this loop with the CPUs, the accuracy and the run record.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError
from harness.jsonfile import write_json
from harness.sweep.grid import (
    ERROR, INTERRUPTED, OK, SKIPPED, SUMMARY_JSON, SWEEP_CSV, TIMEOUT,
    PointKey, PointOutcome, SweepCsvWriter, SweepPlan, WindowMeasurement, configurations, enumerate_points, read_sweep_csv,
)
from harness.sweep.maxrate import find_max_rate
from harness.sweep.points import (
    PRECHECK_TIMEOUT_S, ConfigSession, PointTimeout, Precheck, SweepBackend, estimate_point_s, measure_level,
)
from harness.sweep.search import Probe
from harness.sweep.summary import summarize_sweep

__all__ = ["SweepOutcome", "measure_sweep"]


@dataclass
class SweepOutcome:
    """What a sweep did: every point's outcome, where the files are, and whether it was interrupted."""

    out_dir: Path
    points: list[PointOutcome] = field(default_factory=list)
    interrupted: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def csv_path(self) -> Path:
        return self.out_dir / SWEEP_CSV

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_JSON

    def statuses(self) -> dict[str, int]:
        """Return how many points ended in each status."""
        counts: dict[str, int] = {}
        for point in self.points:
            counts[point.status] = counts.get(point.status, 0) + 1
        return counts

    def measured_anything(self) -> bool:
        """Return whether any point was measured or any search probed a rate."""
        searches = self.summary.get("searches") or {}
        return bool(self.statuses().get(OK)) or any(s.get("probe_count") for s in searches.values())


def _write_point_rows(writer: SweepCsvWriter, key: PointKey, outcome: PointOutcome) -> None:
    if outcome.status != OK:
        writer.write(key, len(outcome.windows) + 1 if outcome.windows else 0, None, outcome.status, outcome.reason)


def _run_point(session: ConfigSession, key: PointKey, plan: SweepPlan, pre: Precheck,
               writer: SweepCsvWriter, clock: Callable[[], float]) -> PointOutcome:
    started = clock()
    estimate = estimate_point_s(pre.capacity_rps, key.load_level, plan)
    if estimate > plan.point_budget_s:
        reason = (f"pre-check: {pre.detail}; warm-up + {plan.min_windows} windows + backlog drain at "
                  f"{key.load_level:g} rps would take ~{estimate:.0f} s > point budget {plan.point_budget_s:g} s")
        outcome = PointOutcome(key, SKIPPED, reason)
        _write_point_rows(writer, key, outcome)
        return outcome

    def on_window(repeat: int, window: WindowMeasurement, reason: str) -> None:
        writer.write(key, repeat, window, OK, reason)

    status, reason, windows = measure_level(session, key.load_level, plan, started + plan.point_budget_s, on_window, clock)
    outcome = PointOutcome(key, status, reason, windows, clock() - started, reason.startswith("stable"))
    _write_point_rows(writer, key, outcome)
    return outcome


def measure_sweep(
    plan: SweepPlan,
    backend: SweepBackend,
    out_dir: str | Path,
    *,
    accuracy: Callable[[SweepPlan], list[Any]] | None = None,
    progress: Callable[[int, int, PointOutcome, float, float], None] | None = None,
    on_probe: Callable[[str, int, Probe], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SweepOutcome:
    """Run every point of ``plan``; write ``sweep.csv`` row by row and ``sweep_summary.json``; return the outcome.

    ``accuracy(plan)`` returns `AccuracyDrift`s (run first, no deployment needed; with the forward-pass
    timings the effects are compared with). ``progress(done, total, point, elapsed_s, eta_s)`` is told
    of each finished point, ``on_probe(precision, batch, probe)`` of each search probe (`find_max_rate`,
    when ``plan.search``; its result is saved in the summary's ``searches``). A KeyboardInterrupt tears the
    current deployment down, keeps every row written, records the points not run as
    ``interrupted`` and returns with ``interrupted`` set. Deployment failures are recorded per point.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outcome = SweepOutcome(out)
    started = clock()
    points = enumerate_points(plan)
    finished: set[PointKey] = set()
    accuracy_entries: list[dict[str, Any]] = []
    searches: dict[str, Any] = {}
    notes: list[str] = []
    writer = SweepCsvWriter(out / SWEEP_CSV, plan)

    def finish(point: PointOutcome) -> None:
        finished.add(point.key)
        outcome.points.append(point)
        if progress is not None:
            elapsed = clock() - started
            measured = [p for p in outcome.points if p.status != SKIPPED] or outcome.points
            per_point = elapsed / max(1, len(measured))
            eta = per_point * sum(1 for k in points if k not in finished)
            progress(len(finished), len(points), point, elapsed, eta)

    def abandon(keys: list[PointKey], status: str, reason: str) -> None:
        for key in keys:
            if key not in finished:
                point = PointOutcome(key, status, reason)
                _write_point_rows(writer, key, point)
                finish(point)

    try:
        if accuracy is not None:
            accuracy_entries = [a.to_dict() for a in accuracy(plan)]
        for precision, batch in configurations(plan):
            config_points = [k for k in points if k.config == (precision, batch)]
            try:
                with backend.open(precision, batch, ready_timeout_s=plan.ready_timeout_s) as session:
                    try:
                        pre = session.precheck(timeout_s=min(plan.point_budget_s, PRECHECK_TIMEOUT_S))
                    except PointTimeout as exc:
                        pre = Precheck(math.nan, f"pre-check did not finish: {exc}")
                    for key in config_points:
                        finish(_run_point(session, key, plan, pre, writer, clock))
                    if plan.search:
                        told = None if on_probe is None else (lambda probe, p=precision, b=batch: on_probe(p, b, probe))
                        result = find_max_rate(session, plan, budget_s=plan.search_budget_s, precheck=pre,
                                               on_probe=told, clock=clock)
                        searches[f"{precision}/{batch}"] = {**result.to_dict(), "precheck": pre.detail}
            except PointTimeout as exc:
                abandon(config_points, TIMEOUT, f"deployment: {exc}")
            except HarnessError as exc:
                abandon(config_points, ERROR, f"deployment: {exc}")
                notes.append(f"{precision} batch={batch}: {exc}")
            _summarize(outcome, plan, accuracy_entries, searches, notes, clock() - started)
    except KeyboardInterrupt:
        outcome.interrupted = True
        abandon(points, INTERRUPTED, "interrupted (SIGINT) before this point finished")
    finally:
        writer.close()
        outcome.elapsed_s = clock() - started
        _summarize(outcome, plan, accuracy_entries, searches, notes, outcome.elapsed_s)
    return outcome


def _summarize(outcome: SweepOutcome, plan: SweepPlan, accuracy: list[dict[str, Any]], searches: dict[str, Any],
               notes: list[str], elapsed_s: float) -> None:
    rows = list(read_sweep_csv(outcome.csv_path)) if outcome.csv_path.exists() else []
    summary = summarize_sweep(rows, p99_ms=plan.p99_ms, max_error_rate=plan.max_error_rate, accuracy=accuracy,
                              searches=searches, load_mode=plan.load_mode)
    outcome.summary = {"plan": plan.to_dict(), "interrupted": outcome.interrupted, "elapsed_s": elapsed_s,
                       "notes": list(notes), **summary}
    write_json(outcome.summary_path, outcome.summary)
