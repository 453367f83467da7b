"""The generator's CPU sampling and the saturation rule (the spawner itself: tests/test_processes.py)."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

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
