"""The sweep loop against a fake backend (simulated services, a fake clock): recording, bounds, interruption."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import pytest

from harness.sweep.grid import CSV_COLUMNS, WindowMeasurement, build_plan, read_sweep_csv
from harness.sweep.loop import measure_sweep
from harness.sweep.maxrate import find_max_rate, search_session
from harness.sweep.points import PointTimeout, Precheck, estimate_point_s, measure_level
from harness.sweep.simulated import SimulatedService


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeSession:
    def __init__(self, backend: "FakeBackend", sim: SimulatedService, behaviour: str, config: tuple) -> None:
        self.backend, self.sim, self.behaviour, self.config = backend, sim, behaviour, config

    def precheck(self, timeout_s: float) -> Precheck:
        return Precheck(self.sim.capacity_rps, f"simulated capacity {self.sim.capacity_rps:g} rps")

    def measure(self, level, *, warmup_s, window_s, count, timeout_s, mode="rate"):
        self.backend.calls.append((self.config, level, count))
        self.backend.modes.append(mode)
        if self.behaviour == "hang":  # a generator that never returns: the bound ends it
            self.backend.clock.t += timeout_s
            raise PointTimeout(f"load run did not end within {timeout_s:.0f} s")
        if self.behaviour == "interrupt" and level == max(self.backend.plan.load_levels):
            raise KeyboardInterrupt
        self.backend.clock.t += warmup_s + count * (window_s + 0.2)
        windows = []
        for _ in range(count):
            # closed loop: N clients keep N requests in flight, so they offer what the service completes
            m = self.sim.measure(self.sim.capacity_rps * level / (level + 2.0) if mode == "concurrency" else level)
            windows.append(WindowMeasurement(
                throughput_rps=m.throughput_rps, p50_ms=m.p50_ms, p95_ms=m.p95_ms, p99_ms=m.p99_ms,
                error_rate=m.error_rate, requests=int(level * window_s), sent_rate_rps=m.sent_rate_rps,
                cpu_percent=95.0, rss_mb=700.0,
            ))
        return windows


class FakeBackend:
    """(precision, batch) -> capacity; behaviour per config: ok, hang, interrupt, unready."""

    def __init__(self, plan, capacities, behaviours=None, noise=0.02):
        self.plan, self.capacities, self.behaviours, self.noise = plan, capacities, behaviours or {}, noise
        self.clock = FakeClock()
        self.opened: list[tuple[str, int]] = []
        self.closed: list[tuple[str, int]] = []
        self.calls: list[tuple] = []
        self.modes: list[str] = []

    @contextmanager
    def open(self, precision, max_batch_size, *, ready_timeout_s):
        config = (precision, max_batch_size)
        behaviour = self.behaviours.get(config, "ok")
        if behaviour == "unready":
            self.clock.t += ready_timeout_s
            raise PointTimeout(f"not Ready within {ready_timeout_s:g} s")
        self.opened.append(config)
        try:
            sim = SimulatedService(self.capacities[config], base_ms=15.0, noise=self.noise, seed=len(self.opened))
            yield FakeSession(self, sim, behaviour, config)
        finally:
            self.closed.append(config)


CAPACITIES = {("fp32", 1): 75.0, ("fp32", 32): 600.0, ("bf16", 1): 130.0, ("bf16", 32): 1500.0}


def _plan(**overrides):
    return build_plan("smoke", **{"load_levels": (50.0, 200.0), "search": False, **overrides})


def test_sweep_writes_tidy_rows_and_a_summary_showing_batching_and_precision(tmp_path):
    plan = _plan(search=True, search_budget_s=400.0)
    backend = FakeBackend(plan, CAPACITIES)
    seen = []
    outcome = measure_sweep(plan, backend, tmp_path, clock=backend.clock,
                        progress=lambda done, total, point, elapsed, eta: seen.append((done, total, eta)))
    assert not outcome.interrupted
    assert [s[0] for s in seen] == list(range(1, 9)) and seen[-1][2] == 0
    rows = list(read_sweep_csv(tmp_path / "sweep.csv"))
    header = (tmp_path / "sweep.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == CSV_COLUMNS
    assert {(r["precision"], r["max_batch_size"], r["load_level"]) for r in rows} == {
        (p, b, lv) for p in ("fp32", "bf16") for b in (1, 32) for lv in (50.0, 200.0)}
    assert all(r["status"] == "ok" for r in rows)
    # overload (200 rps on 75 rps of capacity) is a clear violation: one window, stopped early
    overload = [r for r in rows if (r["precision"], r["max_batch_size"], r["load_level"]) == ("fp32", 1, 200.0)]
    assert len(overload) == 1 and overload[0]["reason"].startswith("stopped early: clear SLO violation")
    light = [r for r in rows if (r["precision"], r["max_batch_size"], r["load_level"]) == ("fp32", 32, 50.0)]
    assert plan.min_windows <= len(light) <= plan.max_windows
    assert [r["repeat"] for r in light] == list(range(1, len(light) + 1))
    assert light[-1]["reason"]  # why it stopped: stable or capped
    assert backend.opened == backend.closed == [("fp32", 1), ("fp32", 32), ("bf16", 1), ("bf16", 32)]

    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert summary["interrupted"] is False and summary["slo"]["p99_ms"] == 500 and len(summary["points"]) == 8
    assert summary["plan"]["preset"] == "smoke"
    configs = {(c["precision"], c["max_batch_size"]): c for c in summary["configurations"]}
    knee = {config: SimulatedService(capacity, base_ms=15.0).knee_rps(500.0) for config, capacity in CAPACITIES.items()}
    for config, entry in configs.items():  # each configuration's max rate is its own search's, converged
        assert entry["max_rate"]["source"] == "search" and entry["max_rate"]["bound"] == "exact"
        assert entry["max_rate"]["value"] == pytest.approx(knee[config], rel=0.08)
    assert configs[("fp32", 32)]["best_under_slo"]["load_level"] == 200.0  # the grid tops out: only a lower bound
    assert configs[("fp32", 1)]["frontier"]
    # the effects are ratios of max rates (batch 32 sustains 200 rps as batch 1 does 50: the grid says nothing)
    batching = {e["precision"]: e["effect"] for e in summary["effects"]["batching"]}
    assert batching["fp32"]["value"] == pytest.approx(knee[("fp32", 32)] / knee[("fp32", 1)], rel=0.15)
    assert batching["bf16"]["value"] == pytest.approx(knee[("bf16", 32)] / knee[("bf16", 1)], rel=0.15)
    precision = {e["max_batch_size"]: e["effect"] for e in summary["effects"]["precision"]}
    assert precision[1]["value"] == pytest.approx(130.0 / 75.0, rel=0.15)
    assert precision[32]["value"] == pytest.approx(1500.0 / 600.0, rel=0.15)
    assert summary["searches"]["fp32/32"]["converged"] and summary["probes"]
    assert set(backend.modes) == {"rate"}


def test_a_point_that_cannot_fit_its_bound_is_skipped_with_the_reason(tmp_path):
    plan = _plan(precisions=("fp32", "fp16"), batch_sizes=(32,))
    capacities = {("fp32", 32): 600.0, ("fp16", 32): 3.0}  # fp16 on a CPU without fp16 hardware
    backend = FakeBackend(plan, capacities)
    outcome = measure_sweep(plan, backend, tmp_path, clock=backend.clock)
    rows = list(read_sweep_csv(tmp_path / "sweep.csv"))
    fp16 = [r for r in rows if r["precision"] == "fp16"]
    statuses = {r["load_level"]: r["status"] for r in fp16}
    assert statuses[200.0] == "skipped"
    skipped = next(r for r in fp16 if r["status"] == "skipped")
    assert "pre-check" in skipped["reason"] and "point budget 30 s" in skipped["reason"]
    assert math.isnan(skipped["throughput_rps"]) and skipped["repeat"] == 0
    assert {p.status for p in outcome.points if p.key.precision == "fp32"} == {"ok"}
    assert (("fp32", 32), 200.0, 1) in backend.calls
    assert not any(c[0] == ("fp16", 32) and c[1] == 200.0 for c in backend.calls)  # skipped: never run


def test_estimate_point_counts_the_backlog_drain():
    plan = _plan()
    base = plan.warmup_s + plan.min_windows * (plan.window_s + 0.5)
    assert estimate_point_s(1000.0, 50.0, plan) == pytest.approx(base)
    # 10 rps over capacity for the whole run, drained at 10 rps
    assert estimate_point_s(10.0, 14.0, plan) == pytest.approx(base + 4.0 * base / 10.0)
    # far over capacity: one window (a clear violation stops there), and the queue bounds the backlog
    one = plan.warmup_s + plan.window_s + 0.5
    assert estimate_point_s(1.0, 1000.0, plan) == pytest.approx(one + 256.0)
    assert estimate_point_s(math.nan, 10.0, plan) == math.inf


def test_a_hanging_point_times_out_and_the_sweep_goes_on(tmp_path):
    plan = _plan(precisions=("fp32",), batch_sizes=(1, 32))
    backend = FakeBackend(plan, CAPACITIES, behaviours={("fp32", 1): "hang"})
    outcome = measure_sweep(plan, backend, tmp_path, clock=backend.clock)
    by_key = {(p.key.max_batch_size, p.key.load_level): p for p in outcome.points}
    assert by_key[(1, 50.0)].status == "timeout" and "did not end within" in by_key[(1, 50.0)].reason
    assert by_key[(32, 200.0)].status == "ok"
    rows = [r for r in read_sweep_csv(tmp_path / "sweep.csv") if r["max_batch_size"] == 1]
    assert [r["status"] for r in rows] == ["timeout", "timeout"]
    assert backend.closed == [("fp32", 1), ("fp32", 32)]


def test_a_deployment_that_never_gets_ready_records_every_point_of_its_config(tmp_path):
    plan = _plan(precisions=("fp32", "bf16"), batch_sizes=(32,), ready_timeout_s=5.0)
    backend = FakeBackend(plan, CAPACITIES, behaviours={("fp32", 32): "unready"})
    measure_sweep(plan, backend, tmp_path, clock=backend.clock)
    rows = list(read_sweep_csv(tmp_path / "sweep.csv"))
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    assert len(fp32) == 2 and all(r["status"] == "timeout" and "not Ready within 5 s" in r["reason"] for r in fp32)
    assert any(r["precision"] == "bf16" and r["status"] == "ok" for r in rows)


def test_interruption_keeps_finished_rows_tears_down_and_records_the_rest(tmp_path):
    plan = _plan()
    backend = FakeBackend(plan, CAPACITIES, behaviours={("fp32", 32): "interrupt"})
    outcome = measure_sweep(plan, backend, tmp_path, clock=backend.clock)
    assert outcome.interrupted
    assert backend.closed == backend.opened == [("fp32", 1), ("fp32", 32)]  # torn down, nothing opened after
    rows = list(read_sweep_csv(tmp_path / "sweep.csv"))
    finished = [r for r in rows if r["status"] == "ok"]
    assert {(r["max_batch_size"], r["load_level"]) for r in finished} == {(1, 50.0), (1, 200.0), (32, 50.0)}
    interrupted = {(r["precision"], r["max_batch_size"], r["load_level"]) for r in rows if r["status"] == "interrupted"}
    assert interrupted == {("fp32", 32, 200.0), ("bf16", 1, 50.0), ("bf16", 1, 200.0), ("bf16", 32, 50.0), ("bf16", 32, 200.0)}
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert summary["interrupted"] is True
    assert any(p["status"] == "ok" and p["windows"] >= 3 for p in summary["points"])


def test_windows_repeat_until_stable_or_the_cap():
    plan = _plan(max_windows=6)
    quiet = FakeBackend(plan, CAPACITIES, noise=0.0)
    with quiet.open("fp32", 32, ready_timeout_s=1) as session:
        status, reason, windows = measure_level(session, 50.0, plan, deadline=1e9, clock=quiet.clock)
    assert status == "ok" and len(windows) == plan.min_windows and reason.startswith("stable")
    noisy = FakeBackend(plan, CAPACITIES, noise=0.5)
    with noisy.open("fp32", 32, ready_timeout_s=1) as session:
        status, reason, windows = measure_level(session, 50.0, plan, deadline=1e9, clock=noisy.clock)
    assert status == "ok" and len(windows) == 6 and reason.startswith("cap of 6 windows reached; not stable")


def test_time_bound_stops_repeating_and_times_out_below_min_windows():
    plan = _plan(max_windows=6)
    backend = FakeBackend(plan, CAPACITIES, noise=0.5)
    with backend.open("fp32", 32, ready_timeout_s=1) as session:
        # room for the warm-up and about two windows only
        status, reason, windows = measure_level(session, 50.0, plan, deadline=plan.warmup_s + 7.5, clock=backend.clock)
    assert status == "timeout" and len(windows) == 1 and "point budget" in reason


def test_search_on_a_deployed_configuration_finds_its_knee():
    plan = _plan()
    backend = FakeBackend(plan, CAPACITIES, noise=0.0)
    with backend.open("fp32", 32, ready_timeout_s=1) as session:
        result = search_session(session, plan, start_rps=100.0, budget_s=10_000, clock=backend.clock)
    sim = SimulatedService(600.0, base_ms=15.0)
    assert result.converged and result.max_rate_rps == pytest.approx(sim.knee_rps(500.0), rel=0.06)
    with backend.open("fp32", 32, ready_timeout_s=1) as session:
        short = search_session(session, plan, start_rps=100.0, budget_s=30.0, clock=backend.clock)
    assert short.stop_reason == "timeout" and len(short.probes) >= 1 and "search budget 30 s" in short.detail


def test_the_sweep_and_the_capacity_plan_get_a_max_rate_from_the_same_search():
    # the sweep passes the pre-check it ran; capacity lets find_max_rate run it: same start, same probes
    plan = _plan(search=True, search_budget_s=200.0)
    results = []
    for precheck in (Precheck(600.0, "given"), None):
        backend = FakeBackend(plan, CAPACITIES, noise=0.02)
        with backend.open("fp32", 32, ready_timeout_s=1) as session:
            starts = []
            results.append(find_max_rate(session, plan, budget_s=plan.search_budget_s, precheck=precheck,
                                         on_start=lambda pre, start: starts.append(start), clock=backend.clock))
        assert starts == [300.0]  # half the pre-check's estimate
    sweep, capacity = results
    assert [p.rate_rps for p in sweep.probes] == [p.rate_rps for p in capacity.probes]
    assert sweep.max_rate_rps == capacity.max_rate_rps and sweep.converged
    # N replicas start from N x one replica's measured rate instead
    backend = FakeBackend(plan, CAPACITIES, noise=0.0)
    with backend.open("fp32", 32, ready_timeout_s=1) as session:
        starts = []
        find_max_rate(session, plan, budget_s=60.0, expected_rps=1000.0, on_start=lambda pre, start: starts.append(start),
                      clock=backend.clock)
    assert starts == [600.0]


def test_a_search_stopped_by_its_budget_keeps_its_bracket_and_says_it_is_a_bound(tmp_path):
    plan = _plan(precisions=("fp32",), batch_sizes=(32,), load_levels=(50.0,), search=True, search_budget_s=20.0)
    backend = FakeBackend(plan, CAPACITIES)
    outcome = measure_sweep(plan, backend, tmp_path, clock=backend.clock)
    search = outcome.summary["searches"]["fp32/32"]
    assert search["stop_reason"] == "timeout" and not search["converged"] and "search budget 20 s" in search["detail"]
    (config,) = outcome.summary["configurations"]
    assert config["max_rate"]["bound"] in ("at least", "range") and config["max_rate"]["text"].startswith("at least")


def test_a_concurrency_sweep_measures_closed_loop_clients_and_searches_rates(tmp_path):
    plan = _plan(precisions=("fp32",), batch_sizes=(1, 32), load_mode="concurrency", load_levels=(1, 4, 16),
                 search=True, search_budget_s=200.0)
    backend = FakeBackend(plan, CAPACITIES)
    outcome = measure_sweep(plan, backend, tmp_path, clock=backend.clock)
    rows = list(read_sweep_csv(tmp_path / "sweep.csv"))
    assert {r["load_mode"] for r in rows} == {"concurrency"} and {r["load_level"] for r in rows} == {1.0, 4.0, 16.0}
    assert all(math.isnan(r["rate_rps"]) for r in rows)
    assert "concurrency" in backend.modes and "rate" in backend.modes  # grid points closed loop, search probes open loop
    points = outcome.summary["points"]
    assert len(points) == 6 and all(p["meets_slo"] for p in points)  # clients never over-offer: no backlog
    assert outcome.summary["load_mode"] == "concurrency"
    assert all(p.key.label(plan.load_mode).endswith(f"concurrency={p.key.load_level:g}") for p in outcome.points)
    (batching,) = outcome.summary["effects"]["batching"]
    assert batching["effect"]["bound"] == "exact" and batching["effect"]["value"] > 4
    assert math.isnan(batching["same_load_rps"])  # equal client counts are not equal loads


def test_concurrency_levels_are_whole_numbers_of_clients():
    from harness.errors import ConfigError

    assert build_plan("smoke", load_mode="concurrency").load_levels == (1.0, 4.0, 16.0, 64.0)
    with pytest.raises(ConfigError) as info:
        build_plan("smoke", load_mode="concurrency", load_levels=(2.5,))
    assert info.value.field == "load_levels" and info.value.value == 2.5
    with pytest.raises(ConfigError) as info:
        build_plan("smoke", load_mode="open")
    assert info.value.field == "load_mode"
