"""One point of a sweep on a deployed configuration: the backend protocol, the pre-check, the windows.

Deploying and measuring are behind a small backend protocol (`SweepBackend` / `ConfigSession`), so
the sweep loop (`harness.sweep.loop`) and the max-rate search (`harness.sweep.maxrate`) are tested
with fakes, and `harness.sweep.local` plugs in the local platform and the rate generator.

Per point (`measure_level`): a warm-up and ONE window first; a clear SLO violation (p99 far beyond
the SLO, errors, a lagging generator) stops there. Otherwise the rest of ``min_windows``, then one
window at a time until throughput and p99 are stable (`harness.measure.stats.assess_stability`) or
``max_windows``. Every point has a wall-clock bound (``point_budget_s``); `estimate_point_s` says
from the pre-check's measured speed whether a point can finish in it.
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Protocol

from harness.errors import HarnessError
from harness.measure.stats import assess_stability
from harness.sweep.grid import CONCURRENCY, ERROR, OK, RATE, TIMEOUT, SweepPlan, WindowMeasurement
from harness.sweep.search import PointMeasurement, SearchSettings, is_clear_violation

__all__ = [
    "QUEUE_LIMIT",
    "PRECHECK_TIMEOUT_S",
    "PointTimeout",
    "Precheck",
    "ConfigSession",
    "SweepBackend",
    "estimate_point_s",
    "measure_level",
    "to_point_measurement",
]


QUEUE_LIMIT = 256  # the service's bounded queue (ServiceConfig.max_queue_size default): backlog beyond it is shed
OVERLOAD_FACTOR = 1.5  # offered/capacity beyond which a point is expected to stop after one window
RERUN_WARMUP_S = 0.5  # a fresh generator run after the first: a moment for its connections to open
STABILITY_METRICS = ("throughput_rps", "p99_ms")
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
    growth = med("backlog_growth")
    details = list(dict.fromkeys(w.generator_detail for w in windows if w.generator_saturated and w.generator_detail))
    return PointMeasurement(
        rate_rps=level, throughput_rps=med("throughput_rps") if windows else 0.0, p99_ms=med("p99_ms"),
        error_rate=med("error_rate") if windows else 1.0, p50_ms=med("p50_ms"), p95_ms=med("p95_ms"),
        sent_rate_rps=None if math.isnan(sent) else sent,
        generator_saturated=any(w.generator_saturated for w in windows), backlog_growth=growth,
        generator_workers=max((w.generator_workers for w in windows), default=1), generator_detail="; ".join(details),
        windows=len(windows), good_share=med("good_share"), goodput_rps=med("goodput_rps"),
        ttft_p99_ms=med("ttft_p99_ms"), itl_p99_ms=med("itl_p99_ms"),
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
    settings = SearchSettings(p99_ms=plan.p99_ms, max_error_rate=plan.max_error_rate, min_good_share=plan.min_good_share)
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
            share = f", good {m.good_share:.0%}" if plan.min_good_share is not None else ""
            reason = f"stopped early: clear SLO violation (p99 {m.p99_ms:.0f} ms, errors {m.error_rate:.1%}{share}{lag})"
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
