"""The client-side prober: interval and jitter under CPU load, fires on schedule past slow probes, timeline."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import psutil
import pytest

from harness.errors import ConfigError
from harness.load.prober import Prober
from harness.request_records import ProbeSample, read_records

from .interrupts import Interrupt, interrupt_after_fork, is_gone, sigint_raises  # noqa: F401


def _wait_for_samples(path, count: int, timeout_s: float = 30.0) -> list[ProbeSample]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = list(read_records(path, ProbeSample)) if path.exists() else []
        if len(rows) >= count:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} samples in {timeout_s} s")


def _busy(cpus):
    """A process that spins on the prober's CPU, so the prober competes for it."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)
    return proc


def test_bad_settings_raise_config_error_naming_the_field(tmp_path):
    with pytest.raises(ConfigError) as info:
        Prober("http://127.0.0.1:9", tmp_path / "t.csv", interval_s=0)
    assert info.value.field == "interval_s"
    with pytest.raises(ConfigError) as info:
        Prober("http://127.0.0.1:9", tmp_path / "t.csv", model="nope")
    assert info.value.field == "model"
    with pytest.raises(ConfigError) as info:
        Prober("http://127.0.0.1:9", tmp_path / "t.csv", cpus=[4096])
    assert info.value.field == "cpus"


@pytest.mark.slow
def test_interval_holds_under_cpu_load_and_the_timeline_is_written_as_it_goes(standin, tmp_path, gen_cpus):
    timeline = tmp_path / "timeline.csv"
    burner = _busy(gen_cpus)
    try:
        with Prober(standin.url, timeline, interval_s=0.05, cpus=gen_cpus) as prober:
            rows = _wait_for_samples(timeline, 10)  # written while it runs, not only at the end
            assert prober.running and rows
            time.sleep(3.0)
        summary = prober.summary
    finally:
        burner.kill()
        burner.wait()
    assert not prober.running
    rows = sorted(read_records(timeline, ProbeSample), key=lambda s: s.t_s)
    assert summary.samples == len(rows) and summary.ok == len(rows) and summary.failed == 0
    span_s = rows[-1].t_s - rows[0].t_s
    # resolution: the timeline has a sample at least every 100 ms on average, and nearly every slot is used
    assert span_s / (len(rows) - 1) <= 0.1
    assert len(rows) + summary.missed == pytest.approx(span_s / 0.05 + 1, abs=2)
    # its own jitter, measured and reported (generous bounds: a CPU hog shares its core)
    assert 0 <= summary.jitter_p50_ms < 50
    assert summary.jitter_p99_ms < 100
    assert summary.jitter_max_ms >= summary.jitter_p99_ms >= summary.jitter_p50_ms
    assert all(r.ok and r.status == 200 and r.latency_ms > 0 for r in rows)


@pytest.mark.slow
def test_probes_fire_on_schedule_while_earlier_ones_are_slow_and_time_out_on_their_own(standin_factory, tmp_path,
                                                                                       gen_cpus):
    slow = standin_factory("--delay-ms", "300")
    timeline = tmp_path / "timeline.csv"
    with Prober(slow.url, timeline, interval_s=0.05, timeout_s=0.15, cpus=gen_cpus) as prober:
        _wait_for_samples(timeline, 20)
    rows = sorted(read_records(timeline, ProbeSample), key=lambda s: s.t_s)
    gaps = [b.t_s - a.t_s for a, b in zip(rows, rows[1:])]
    # a 300 ms answer does not hold up the next probe 50 ms later
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(0.05, abs=0.02)
    assert all(not r.ok and r.status == 0 and r.error.startswith("timeout") for r in rows)
    assert all(140 <= r.latency_ms < 1000 for r in rows)  # each probe stopped at its own 150 ms timeout
    assert prober.summary.failed == len(rows)


@pytest.mark.slow
def test_stop_leaves_no_process_and_an_unreachable_endpoint_is_failures_not_errors(tmp_path, gen_cpus):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prober = Prober(f"http://127.0.0.1:{port}", tmp_path / "timeline.csv", interval_s=0.05, cpus=gen_cpus).start()
    try:
        pid = prober._proc.pid
        rows = _wait_for_samples(tmp_path / "timeline.csv", 5)
    finally:
        summary = prober.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert all(not r.ok and r.status == 0 and r.error for r in rows)
    assert summary.failed >= 5 and summary.ok == 0
    assert math.isfinite(summary.jitter_p99_ms)


def test_an_interrupt_right_after_the_prober_is_spawned_leaves_it_recorded_and_stop_ends_it(tmp_path, interrupt_after_fork):
    prober = Prober("http://127.0.0.1:9", tmp_path / "timeline.csv")
    try:
        with pytest.raises(Interrupt):
            prober.start()  # SIGINT lands before start() returns, as a Ctrl-C during a chaos run's start can
    finally:
        prober.stop()  # what the chaos run's teardown does
    [pid] = interrupt_after_fork
    assert is_gone(pid), "the prober outlived the teardown"
