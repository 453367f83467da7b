"""A search probe whose windows disagree is measured once more: a machine stall is not the service's knee."""

from __future__ import annotations

import pytest

from harness.sweep.grid import WindowMeasurement, build_plan
from harness.sweep.maxrate import CONFIRM_WINDOWS, PROBE_WINDOWS, search_session, windows_disagree
from harness.sweep.search import SearchSettings
from harness.sweep.simulated import SimulatedService


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _window(p99_ms: float, error_rate: float = 0.0, rate: float = 100.0) -> WindowMeasurement:
    return WindowMeasurement(throughput_rps=rate * (1 - error_rate), p50_ms=p99_ms / 4, p95_ms=p99_ms / 2,
                             p99_ms=p99_ms, error_rate=error_rate, requests=int(rate * 3), sent_rate_rps=rate,
                             cpu_percent=90.0, rss_mb=500.0)


class StallingSession:
    """A simulated service; the windows whose ordinal is in ``stalled`` hit a machine stall (the generator's
    in-flight cap: 5% of requests refused, p99 past the SLO but not a clear violation)."""

    def __init__(self, capacity_rps: float, stalled: set[int], clock: Clock) -> None:
        self.sim = SimulatedService(capacity_rps, base_ms=15.0, noise=0.0)
        self.stalled, self.clock = stalled, clock
        self.windows = 0
        self.counts: list[tuple[float, int]] = []

    def precheck(self, timeout_s):  # not used: the search is given its start
        raise AssertionError("no pre-check expected")

    def measure(self, level, *, warmup_s, window_s, count, timeout_s, mode="rate"):
        self.counts.append((level, count))
        self.clock.t += warmup_s + count * (window_s + 0.2)
        out = []
        for _ in range(count):
            self.windows += 1
            m = self.sim.measure(level)
            if self.windows in self.stalled:
                out.append(_window(900.0, error_rate=0.05, rate=level))
            else:
                out.append(_window(m.p99_ms, m.error_rate, rate=level))
        return out


def test_windows_disagree_only_when_some_pass_and_some_fail():
    s = SearchSettings(p99_ms=500.0)
    assert windows_disagree(100.0, [_window(100.0), _window(900.0, 0.05)], s)
    assert not windows_disagree(100.0, [_window(100.0), _window(120.0)], s)
    assert not windows_disagree(100.0, [_window(900.0, 0.05), _window(700.0)], s)


def test_a_stalled_window_below_the_knee_is_remeasured_and_does_not_become_the_knee():
    plan = build_plan("smoke", load_levels=(50.0,), search=False)
    clock = Clock()
    # the second window (the first probe's second) stalls: alone it would fail the probe at 300 rps
    session = StallingSession(600.0, stalled={2}, clock=clock)
    result = search_session(session, plan, start_rps=300.0, budget_s=10_000, clock=clock)
    first = result.probes[0]
    assert first.rate_rps == 300.0 and first.verdict == "pass"
    assert first.measurement.windows == PROBE_WINDOWS + CONFIRM_WINDOWS
    assert "windows disagreed" in first.measurement.reason
    assert sum(count for level, count in session.counts if level == 300.0) == PROBE_WINDOWS + CONFIRM_WINDOWS
    knee = session.sim.knee_rps(plan.p99_ms)
    assert result.converged and result.max_rate_rps == pytest.approx(knee, rel=0.06)


def test_a_probe_whose_extra_windows_fail_too_fails():
    plan = build_plan("smoke", load_levels=(50.0,), search=False)
    clock = Clock()
    session = StallingSession(600.0, stalled={2, 3, 4}, clock=clock)  # the stall outlasts the re-measure
    result = search_session(session, plan, start_rps=300.0, budget_s=10_000, clock=clock)
    first = result.probes[0]
    assert first.verdict == "fail" and first.measurement.windows == PROBE_WINDOWS + CONFIRM_WINDOWS


def test_no_re_measure_when_the_budget_cannot_hold_it():
    plan = build_plan("smoke", load_levels=(50.0,), search=False)
    clock = Clock()
    session = StallingSession(600.0, stalled={2}, clock=clock)
    # the budget holds one probe and nothing more
    one_probe = plan.warmup_s + PROBE_WINDOWS * (plan.window_s + 0.5) + 1.0
    result = search_session(session, plan, start_rps=300.0, budget_s=one_probe + 0.5, clock=clock)
    first = result.probes[0]
    assert first.measurement.windows == PROBE_WINDOWS and "no time left" in first.measurement.reason
