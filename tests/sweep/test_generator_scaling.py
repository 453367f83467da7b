"""The sweep's rate measurement scales its own generator: a run the generator limited is run again from more
worker processes, up to one per generator CPU; only then is a window generator-limited, saying why."""

from __future__ import annotations

import math

import pytest

from harness.load.cpu_sampler import CpuStats
from harness.load.rate import RateConfig, RateResult, ScheduleLag, schedule_offsets
from harness.load.result import result_from_records
from harness.request_records import RequestRecord
from harness.sweep.grid import build_plan
from harness.sweep.local import ARRIVAL, LocalSession
from harness.sweep.points import to_point_measurement
from harness.sweep.search import GENERATOR_LIMITED, PASS, SearchSettings, classify

CALM = CpuStats(4, 30.0, 40.0, 0.0, False, 0.5)


def _fake_run_rate(calls: list[int], lag_ms_by_workers: dict[int, float]):
    """A run_rate that sends the seeded schedule on paper, each request ``lag_ms_by_workers[workers]`` late."""

    def run_rate(host, out_dir, *, rate_rps, duration_s, seed, workers, **_kwargs):
        calls.append(workers)
        lag_s = lag_ms_by_workers[workers] / 1000.0
        start = 1_700_000_000.0
        records = [RequestRecord(start + t, start + t + lag_s, 5.0 + lag_s * 1000, 200, True, source="rate")
                   for t in schedule_offsets(rate_rps, duration_s, ARRIVAL, seed)]
        load = result_from_records(records, source="rate", cpu=CALM, exit_code=0, hard_killed=False, started_s=start,
                                   ended_s=start + duration_s, paths={})
        lag = ScheduleLag(len(records), len(records), 0, lag_s * 1000, lag_s * 1000, lag_s * 1000, lag_s < 0.05)
        return RateResult(RateConfig(host=host, rate_rps=rate_rps, duration_s=duration_s), load, lag, records)

    return run_rate


def _session(tmp_path, generator_cpus):
    plan = build_plan("smoke", precisions=("fp32",), batch_sizes=(8,), load_levels=(50.0,))
    return LocalSession(None, "http://127.0.0.1:9", plan, 8, tmp_path, generator_cpus, None)


def test_a_run_the_generator_limited_is_run_again_from_more_processes_and_the_count_is_kept(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr("harness.load.rate.run_rate", _fake_run_rate(calls, {1: 200.0, 2: 2.0}))
    session = _session(tmp_path, [0, 1])
    windows = session.measure(100.0, warmup_s=0.5, window_s=1.0, count=2, timeout_s=30.0)
    assert calls == [1, 2]  # one process lagged 200 ms: the same arrivals again from two
    assert not any(w.generator_saturated for w in windows) and {w.generator_workers for w in windows} == {2}
    m = to_point_measurement(100.0, windows)
    assert classify(m, SearchSettings(p99_ms=500))[0] == PASS and m.generator_workers == 2
    session.measure(120.0, warmup_s=0.5, window_s=1.0, count=1, timeout_s=30.0)
    assert calls == [1, 2, 2]  # the next rate starts from the count reached


def test_at_the_most_workers_the_cpus_allow_the_window_is_generator_limited_and_says_why(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr("harness.load.rate.run_rate", _fake_run_rate(calls, {1: 200.0, 2: 150.0}))
    windows = _session(tmp_path, [0, 1]).measure(100.0, warmup_s=0.5, window_s=1.0, count=1, timeout_s=30.0)
    assert calls == [1, 2] and windows[0].generator_saturated
    detail = windows[0].generator_detail
    assert detail.startswith("p99 send lag 150 ms > 50 ms with 2 worker process(es) on CPU [0, 1]")
    assert detail.endswith("the most the generator CPUs allow")
    verdict, reason = classify(to_point_measurement(100.0, windows), SearchSettings(p99_ms=500))
    assert verdict == GENERATOR_LIMITED and reason == f"load generator could not keep its schedule at 100.0 rps ({detail})"


@pytest.mark.parametrize("cpus", [[1], None])
def test_one_generator_cpu_never_adds_a_process(tmp_path, monkeypatch, cpus):
    calls: list[int] = []
    monkeypatch.setattr("harness.load.rate.run_rate", _fake_run_rate(calls, {1: 200.0}))
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0})  # None: every usable CPU, here one
    windows = _session(tmp_path, cpus).measure(100.0, warmup_s=0.5, window_s=1.0, count=1, timeout_s=30.0)
    assert calls == [1] and windows[0].generator_saturated and windows[0].generator_workers == 1
    assert "the most the generator CPUs allow" in windows[0].generator_detail
    assert math.isfinite(windows[0].p99_ms)
