"""Runs a sweep: per configuration deploy once, pre-check, each load level's windows until stable, then
the configuration's max-rate search.

Deploying and measuring are behind a small backend protocol (`SweepBackend` / `ConfigSession`), so
the loop -- time bounds, skip and timeout recording, stability, early stop, interruption -- is
tested with fakes, and `harness.sweep.local` plugs in the local platform and the rate generator.

Per point: a warm-up and ONE window first; a clear SLO violation (p99 far beyond the SLO, errors,
a lagging generator) stops there. Otherwise the rest of ``min_windows``, then one window at a time
until throughput and p99 are stable (`harness.measure.stats.assess_stability`) or ``max_windows``.
Every point has a wall-clock bound (``point_budget_s``): a pre-check estimates from the deployment's
measured speed whether the point can finish in it and records ``skipped`` with the numbers if not;
a point that runs out of time anyway is recorded ``timeout`` with what it had. On SIGINT the current
deployment is torn down (context managers), the rows written so far stay, the points not run are
recorded ``interrupted``, and the summary is written.

A configuration's max sustainable rate comes from `find_max_rate`, the one function the sweep and
the capacity plan (`harness.sweep.planner`) both call, so their figures for the same configuration
are measured the same way: a pre-check of the deployment's speed, a search starting from half of
it (`START_FRACTION`), short probes (warm-up and two windows, stopped after one on a clear
violation) until the bracket converges or the search's wall-clock budget is spent.
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol

from harness.errors import HarnessError
from harness.jsonfile import write_json
from harness.measure.stats import assess_stability
from harness.sweep.grid import (
    CONCURRENCY, ERROR, INTERRUPTED, OK, RATE, SKIPPED, SUMMARY_JSON, SWEEP_CSV, TIMEOUT,
    PointKey, PointOutcome, SweepCsvWriter, SweepPlan, WindowMeasurement, configurations, enumerate_points,
    read_sweep_csv,
)
from harness.sweep.search import (
    INCOMPLETE, PointMeasurement, Probe, SearchResult, SearchSettings, is_clear_violation, search_max_rate,
)
from harness.sweep.summary import summarize_sweep

__all__ = [
    "QUEUE_LIMIT",
    "PointTimeout",
    "Precheck",
    "ConfigSession",
    "SweepBackend",
    "SweepOutcome",
    "estimate_point_s",
    "measure_level",
    "to_point_measurement",
    "search_session",
    "find_max_rate",
    "measure_sweep",
]

QUEUE_LIMIT = 256  # the service's bounded queue (ServiceConfig.max_queue_size default): backlog beyond it is shed
OVERLOAD_FACTOR = 1.5  # offered/capacity beyond which a point is expected to stop after one window
RERUN_WARMUP_S = 0.5  # a fresh generator run after the first: a moment for its connections to open
STABILITY_METRICS = ("throughput_rps", "p99_ms")
START_FRACTION = 0.5  # a search starts at this fraction of the pre-check's (optimistic) capacity estimate
EXPECTED_FRACTION = 0.6  # ... or of an expected rate (N replicas: N x one replica's measured rate)
PROBE_WINDOWS = 2  # windows of one search probe (one when the first is a clear violation)
MAX_PROBES = 12
PRECHECK_TIMEOUT_S = 30.0
GENERATOR_START_S = 1.0  # a generator process's start-up, before its first scheduled request


class PointTimeout(HarnessError):
    """A deployment, pre-check or window did not finish within its time bound."""


@dataclass(frozen=True)
class Precheck:
    """The deployment's measured speed before any point runs: its estimated capacity and how it was found."""

    capacity_rps: float
    detail: str


class ConfigSession(Protocol):
    """One deployed configuration (precision, max_batch_size)."""

    def precheck(self, timeout_s: float) -> Precheck:
        """Return the estimated capacity; raise PointTimeout when it cannot be found in time."""

    def measure(self, level: float, *, warmup_s: float, window_s: float, count: int, timeout_s: float,
                mode: str = RATE) -> list[WindowMeasurement]:
        """Run the load at ``level`` (a rate, or a number of closed-loop clients when ``mode`` is
        concurrency) for a warm-up then ``count`` windows; return one measurement per window."""


class SweepBackend(Protocol):
    """Deploys configurations; ``open`` returns a context manager that tears the deployment down."""

    def open(self, precision: str, max_batch_size: int, *, ready_timeout_s: float) -> AbstractContextManager[ConfigSession]:
        """Deploy; raise PointTimeout when not Ready in time, HarnessError when the deployment fails."""


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


def estimate_point_s(capacity_rps: float, level: float, plan: SweepPlan) -> float:
    """Return the estimated wall time (s) of a point: its windows plus draining the backlog it builds.

    A rate far above capacity (over `OVERLOAD_FACTOR` x) is a clear violation that stops after its
    first window; below that the point runs ``min_windows``. Open-loop load above capacity builds a
    backlog (up to the service's bounded queue) that the service must drain before it answers anew.
    Closed-loop clients build none: at most ``level`` requests are in flight when the point ends.
    """
    if not (math.isfinite(capacity_rps) and capacity_rps > 0):
        return math.inf
    if plan.load_mode == CONCURRENCY:
        return plan.warmup_s + plan.min_windows * (plan.window_s + RERUN_WARMUP_S) + level / capacity_rps
    windows = 1 if level > OVERLOAD_FACTOR * capacity_rps else plan.min_windows
    run_s = plan.warmup_s + windows * (plan.window_s + RERUN_WARMUP_S)
    backlog = min(float(QUEUE_LIMIT), max(0.0, level - capacity_rps) * run_s)
    return run_s + backlog / capacity_rps


def to_point_measurement(level: float, windows: list[WindowMeasurement]) -> PointMeasurement:
    """Return the medians of ``windows`` as a `PointMeasurement` at offered rate ``level``."""

    def med(name: str) -> float:
        values = sorted(getattr(w, name) for w in windows if math.isfinite(getattr(w, name)))
        if not values:
            return math.nan
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0

    sent = med("sent_rate_rps")
    return PointMeasurement(
        rate_rps=level, throughput_rps=med("throughput_rps") if windows else 0.0, p99_ms=med("p99_ms"),
        error_rate=med("error_rate") if windows else 1.0, p50_ms=med("p50_ms"), p95_ms=med("p95_ms"),
        sent_rate_rps=None if math.isnan(sent) else sent,
        generator_saturated=any(w.generator_saturated for w in windows), windows=len(windows),
    )


def measure_level(
    session: ConfigSession, level: float, plan: SweepPlan, deadline: float,
    on_window: Callable[[int, WindowMeasurement, str], None] | None = None,
    clock: Callable[[], float] = time.monotonic, mode: str | None = None,
) -> tuple[str, str, list[WindowMeasurement]]:
    """Measure one load level before ``deadline`` (a ``clock`` time); return (status, reason, windows).

    ``mode`` is the plan's load mode unless given (a search's probes are rates in either mode).
    ``on_window(repeat, window, reason)`` is called as each window completes; ``reason`` is set on
    the window after which the point stopped (stable, capped, clear violation, time bound). Status
    is ok; timeout when fewer than ``min_windows`` windows fit (and no clear violation ended it);
    error when the session failed. Never raises HarnessError.
    """
    settings = SearchSettings(p99_ms=plan.p99_ms, max_error_rate=plan.max_error_rate)
    mode = mode or plan.load_mode
    windows: list[WindowMeasurement] = []
    cost_per_window = plan.window_s + RERUN_WARMUP_S  # learnt from each run: window plus generator start-up

    def fits(count: int, warmup_s: float) -> bool:
        return deadline - clock() >= warmup_s + count * cost_per_window

    def run(count: int, warmup_s: float) -> list[WindowMeasurement]:
        nonlocal cost_per_window
        started = clock()
        got = session.measure(level, warmup_s=warmup_s, window_s=plan.window_s, count=count,
                              timeout_s=max(0.0, deadline - started), mode=mode)
        if len(got) != count:
            raise HarnessError(f"the load run returned {len(got)} of {count} windows")
        cost_per_window = max(cost_per_window, (clock() - started - warmup_s) / count)
        return got

    def record(new: list[WindowMeasurement], reason: str) -> None:
        for i, window in enumerate(new):
            windows.append(window)
            if on_window is not None:
                on_window(len(windows), window, reason if i == len(new) - 1 else "")

    try:
        if not fits(1, plan.warmup_s):
            return TIMEOUT, f"point budget {plan.point_budget_s:g} s cannot hold a warm-up and one window", windows
        first = run(1, plan.warmup_s)
        m = to_point_measurement(level, first)
        if is_clear_violation(m, settings):
            lag = ", generator lagging" if m.generator_saturated else ""
            reason = f"stopped early: clear SLO violation (p99 {m.p99_ms:.0f} ms, errors {m.error_rate:.1%}{lag})"
            record(first, reason)
            return OK, reason, windows
        record(first, "")
        while True:
            need = max(1, plan.min_windows - len(windows))
            if not fits(need, RERUN_WARMUP_S):
                reason = f"point budget {plan.point_budget_s:g} s reached after {len(windows)} window(s)"
                return (OK if len(windows) >= plan.min_windows else TIMEOUT), reason, windows
            new = run(need, RERUN_WARMUP_S)
            total = len(windows) + len(new)
            verdict = _stability(windows + new, plan)
            stable = verdict.startswith("stable")
            capped = total >= plan.max_windows
            out_of_time = not (stable or capped) and not fits(max(1, plan.min_windows - total), RERUN_WARMUP_S)
            reason = ""
            if stable:
                reason = verdict
            elif capped:
                reason = f"cap of {plan.max_windows} windows reached; {verdict}"
            elif out_of_time:
                reason = f"point budget {plan.point_budget_s:g} s reached after {total} window(s); {verdict}"
            record(new, reason)
            if stable or capped:
                return OK, reason, windows
            if out_of_time:
                return (OK if total >= plan.min_windows else TIMEOUT), reason, windows
    except PointTimeout as exc:
        return (OK if len(windows) >= plan.min_windows else TIMEOUT), str(exc), windows
    except HarnessError as exc:
        return ERROR, f"measurement failed: {exc}", windows


def _stability(windows: list[WindowMeasurement], plan: SweepPlan) -> str:
    notes = []
    for metric in STABILITY_METRICS:
        values = [getattr(w, metric) for w in windows]
        result = assess_stability(values, max_relative_half_width=plan.max_relative_half_width,
                                  min_repeats=plan.min_windows)
        if not result.stable:
            return f"not stable: {metric} {result.reason}"
        notes.append(f"{metric} {result.relative_half_width:.1%}")
    return f"stable: relative CI half-width {', '.join(notes)} <= {plan.max_relative_half_width:.0%}"


def search_session(
    session: ConfigSession, plan: SweepPlan, *, start_rps: float, budget_s: float,
    on_probe: Callable[[Any], None] | None = None, clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Return the max sustainable rate of a deployed configuration under ``plan.p99_ms``, by search.

    Each probe is a short rate point (warm-up and `PROBE_WINDOWS` windows, stopped after the first
    on a clear violation). When ``budget_s`` cannot hold another probe the bracket so far is returned
    with stop_reason ``timeout``.
    """
    probe_plan = replace(plan, min_windows=PROBE_WINDOWS, max_windows=PROBE_WINDOWS)
    deadline = clock() + budget_s
    settings = SearchSettings(p99_ms=plan.p99_ms, max_error_rate=plan.max_error_rate, rel_tol=plan.search_rel_tol,
                              start_rps=min(max(start_rps, 0.5), 100_000.0), max_probes=MAX_PROBES)
    # a whole probe: the generator's start, warm-up, its windows and re-runs; then as long as the longest so far
    probe_s = [plan.warmup_s + PROBE_WINDOWS * (plan.window_s + RERUN_WARMUP_S) + GENERATOR_START_S]

    def keep_going(rate: float) -> str | None:
        if deadline - clock() < max(probe_s):
            return f"search budget {budget_s:g} s spent"
        return None

    def measure(rate: float) -> PointMeasurement:
        started = clock()
        point_deadline = min(deadline, started + plan.point_budget_s)
        status, reason, windows = measure_level(session, rate, probe_plan, point_deadline, clock=clock, mode=RATE)
        probe_s.append(clock() - started)
        m = to_point_measurement(rate, windows)
        if status == TIMEOUT and point_deadline == deadline:  # the search's budget cut it short, not the service
            return replace(m, status=INCOMPLETE, reason=reason)
        return replace(m, status="ok" if status == OK and windows else status, reason=reason)

    return search_max_rate(measure, settings, on_probe=on_probe, keep_going=keep_going)


def find_max_rate(
    session: ConfigSession, plan: SweepPlan, *, budget_s: float, precheck: Precheck | None = None,
    expected_rps: float | None = None, on_probe: Callable[[Probe], None] | None = None,
    on_start: Callable[[Precheck | None, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Return a deployed configuration's max sustainable rate under the plan's SLO: the sweep's figure
    per configuration and the capacity plan's per replica count come from here, measured alike.

    The search starts at `START_FRACTION` of the pre-check's capacity estimate (run here unless
    ``precheck`` is given), or at `EXPECTED_FRACTION` of ``expected_rps`` when a figure is expected
    (N replicas: N x one replica's). ``on_start(precheck, start_rps)`` is told where it starts.
    Raises HarnessError when the deployment fails; a pre-check that times out only moves the start.
    """
    pre = precheck
    if expected_rps is not None and math.isfinite(expected_rps) and expected_rps > 0:
        start = EXPECTED_FRACTION * expected_rps
    else:
        if pre is None:
            try:
                pre = session.precheck(timeout_s=min(plan.point_budget_s, PRECHECK_TIMEOUT_S))
            except PointTimeout as exc:
                pre = Precheck(math.nan, f"pre-check did not finish: {exc}")
        fallback = min(plan.load_levels) if plan.load_levels and plan.load_mode == RATE else 10.0
        start = START_FRACTION * pre.capacity_rps if math.isfinite(pre.capacity_rps) else fallback
    if on_start is not None:
        on_start(pre, start)
    return search_session(session, plan, start_rps=start, budget_s=budget_s, on_probe=on_probe, clock=clock)


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
