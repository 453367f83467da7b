"""The generator's CPU sampling, the saturation rule, and bounded child processes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import psutil
import pytest

from harness.errors import ConfigError
from harness.load import child_process
from harness.load.cpu_sampler import SATURATED_PERCENT, CpuSampler, check_saturation


def test_saturation_needs_a_sustained_share_of_the_load_window():
    idle = [(float(t), 40.0) for t in range(20)]
    assert not check_saturation(idle).saturated
    blip = idle[:]
    blip[5] = (5.0, 99.0)  # one busy sample: a blip, not saturation
    assert not check_saturation(blip).saturated
    busy = [(float(t), 98.0 if t % 2 else 50.0) for t in range(20)]  # half the window above 90%
    stats = check_saturation(busy)
    assert stats.saturated and stats.busy_fraction == pytest.approx(0.5) and stats.max_percent == 98.0
    # samples outside the load window (start-up imports) do not count
    startup = [(float(t), 100.0) for t in range(5)] + [(float(t), 30.0) for t in range(5, 25)]
    assert check_saturation(startup).saturated
    assert not check_saturation(startup, start_s=5.0, end_s=24.0, interval_s=1.0).saturated


def test_no_samples_is_not_saturated_and_reports_nan():
    stats = check_saturation([])
    assert stats.samples == 0 and not stats.saturated and math.isnan(stats.mean_percent)
    assert stats.to_dict()["mean_percent"] is None


@pytest.mark.slow
def test_sampler_sees_a_busy_process_and_stops_when_it_exits():
    proc = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 2\nwhile time.time() < end: pass"])
    try:
        sampler = CpuSampler(proc.pid, interval_s=0.2).start()
        proc.wait(timeout=30)
        time.sleep(0.5)
        samples = sampler.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(samples) >= 3
    # a spinning process uses most of a core (less when the machine is busy; generous)
    assert max(p for _, p in samples) > SATURATED_PERCENT / 3


def test_validate_cpus_names_the_field_and_the_cpu():
    allowed = sorted(os.sched_getaffinity(0))
    assert child_process.validate_cpus(None) is None
    assert child_process.validate_cpus([allowed[0], allowed[0]]) == (allowed[0],)
    with pytest.raises(ConfigError) as info:
        child_process.validate_cpus([4096], field="generator_cpus")
    assert info.value.field == "generator_cpus" and "4096" in str(info.value)
    with pytest.raises(ConfigError):
        child_process.validate_cpus([])


@pytest.mark.slow
def test_spawn_pins_and_stop_kills_the_whole_group(tmp_path):
    cpu = sorted(os.sched_getaffinity(0))[-1]
    # a child that ignores SIGTERM and has a grandchild: stop must still clear both
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "time.sleep(60)\n")
    proc = child_process.spawn([sys.executable, "-c", code], cpus=[cpu], log_path=tmp_path / "log")
    try:
        deadline = time.monotonic() + 20
        while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchildren = psutil.Process(proc.pid).children()
        assert grandchildren
        assert os.sched_getaffinity(proc.pid) == {cpu}
        began = time.monotonic()
        code = child_process.stop(proc, grace_s=0.5)
        assert time.monotonic() - began < 5
        assert code == -9
        for child in grandchildren:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            child_process.stop(proc, grace_s=0)
