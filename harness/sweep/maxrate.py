"""A deployed configuration's max sustainable rate under the p99 SLO, by bounded search.

`find_max_rate` is the one function the sweep (`harness.sweep.loop`) and the capacity plan
(`harness.sweep.planner`) both call, so their figures for the same configuration are measured the
same way: a pre-check of the deployment's speed, a search starting from half of it
(`START_FRACTION`), short probes (warm-up and two windows, stopped after one on a clear violation)
until the bracket converges or the search's wall-clock budget is spent (`harness.sweep.search`).

A probe whose windows disagree (one meets the SLO, another does not) is measured once more
(`CONFIRM_WINDOWS` further windows) and judged on the medians of all its windows: on a shared machine
one stalled window (the generator's in-flight cap reached while the service was descheduled) must not
be taken for the service's knee, and one lucky window not for headroom. A clear violation is never
re-measured.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Callable

from harness.sweep.grid import OK, RATE, TIMEOUT, SweepPlan, WindowMeasurement
from harness.sweep.points import (
    GENERATOR_START_S,
    PRECHECK_TIMEOUT_S,
    RERUN_WARMUP_S,
    ConfigSession,
    PointTimeout,
    Precheck,
    measure_level,
    to_point_measurement,
)
from harness.sweep.search import (
    INCOMPLETE,
    PASS,
    PointMeasurement,
    Probe,
    SearchResult,
    SearchSettings,
    classify,
    search_max_rate,
)

__all__ = ["START_FRACTION", "EXPECTED_FRACTION", "PROBE_WINDOWS", "CONFIRM_WINDOWS", "MAX_PROBES", "windows_disagree", "search_session", "find_max_rate"]


START_FRACTION = 0.5  # a search starts at this fraction of the pre-check's (optimistic) capacity estimate
EXPECTED_FRACTION = 0.6  # ... or of an expected rate (N replicas: N x one replica's measured rate)
PROBE_WINDOWS = 2  # windows of one search probe (one when the first is a clear violation)
CONFIRM_WINDOWS = 2  # further windows of a probe whose windows disagreed, judged on the medians of all
MAX_PROBES = 12


def windows_disagree(rate: float, windows: list[WindowMeasurement], settings: SearchSettings) -> bool:
    """Return True when some of a probe's windows meet the SLO at ``rate`` and others do not."""
    passed = {classify(to_point_measurement(rate, [w]), settings)[0] == PASS for w in windows}
    return len(passed) > 1


def search_session(
    session: ConfigSession, plan: SweepPlan, *, start_rps: float, budget_s: float,
    on_probe: Callable[[Any], None] | None = None, clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Return the max sustainable rate of a deployed configuration under ``plan.p99_ms``, by search.

    Each probe is a short rate point (warm-up and `PROBE_WINDOWS` windows, stopped after the first
    on a clear violation); windows that disagree get `CONFIRM_WINDOWS` more before the verdict. When ``budget_s`` cannot hold another probe the bracket so far is returned
    with stop_reason ``timeout``.
    """
    probe_plan = replace(plan, min_windows=PROBE_WINDOWS, max_windows=PROBE_WINDOWS)
    confirm_plan = replace(plan, min_windows=CONFIRM_WINDOWS, max_windows=CONFIRM_WINDOWS, warmup_s=RERUN_WARMUP_S)
    confirm_s = RERUN_WARMUP_S + CONFIRM_WINDOWS * (plan.window_s + RERUN_WARMUP_S) + GENERATOR_START_S
    deadline = clock() + budget_s
    settings = SearchSettings(p99_ms=plan.p99_ms, max_error_rate=plan.max_error_rate, rel_tol=plan.search_rel_tol,
                              start_rps=min(max(start_rps, 0.5), 100_000.0), max_probes=MAX_PROBES,
                              min_good_share=plan.min_good_share)  # generative: the token SLO's good share
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
        if status == OK and windows_disagree(rate, windows, settings):
            # one window met the SLO and another did not: a stall of the machine or the service's knee;
            # more windows decide, on the medians of all of them
            if point_deadline - clock() >= confirm_s:
                more_status, more_reason, more = measure_level(session, rate, confirm_plan, point_deadline,
                                                               clock=clock, mode=RATE)
                windows = windows + more
                reason = (f"windows disagreed; {len(more)} more measured ({more_reason or more_status}), "
                          f"judged on the medians of {len(windows)}")
            else:
                reason = f"windows disagreed; no time left in the budget to measure more ({reason})"
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
