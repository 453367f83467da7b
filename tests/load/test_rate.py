"""Open-loop load: the schedule, keeping it, latency from the scheduled time, overflow as errors."""

from __future__ import annotations

import math
import statistics
import threading
import time
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.load.rate import OVERFLOW_ERROR, run_rate, schedule_offsets


def test_constant_schedule_is_evenly_spaced():
    offsets = schedule_offsets(200, 2.0)
    assert len(offsets) == 400
    assert offsets[0] == 0.0 and offsets[-1] < 2.0
    gaps = {round(b - a, 9) for a, b in zip(offsets, offsets[1:])}
    assert gaps == {0.005}


def test_poisson_schedule_is_seeded_and_has_the_right_mean_rate():
    first, again = schedule_offsets(500, 20, "poisson", seed=7), schedule_offsets(500, 20, "poisson", seed=7)
    assert first == again
    assert first != schedule_offsets(500, 20, "poisson", seed=8)
    assert len(first) == pytest.approx(500 * 20, rel=0.05)
    gaps = [b - a for a, b in zip(first, first[1:])]
    # exponential gaps: the standard deviation equals the mean
    assert statistics.pstdev(gaps) == pytest.approx(statistics.fmean(gaps), rel=0.1)
    assert all(0 < t < 20 for t in first)


def test_bad_settings_raise_config_error_naming_the_field(tmp_path):
    with pytest.raises(ConfigError) as info:
        run_rate("http://127.0.0.1:9", tmp_path, rate_rps=0, duration_s=1)
    assert info.value.field == "rate_rps"
    with pytest.raises(ConfigError) as info:
        run_rate("127.0.0.1:9", tmp_path, rate_rps=10, duration_s=1)
    assert info.value.field == "host"
    with pytest.raises(ConfigError) as info:
        run_rate("http://127.0.0.1:9", tmp_path, rate_rps=10, duration_s=1, arrival="burst")
    assert info.value.field == "arrival"


@pytest.mark.slow
def test_keeps_a_200_rps_schedule_against_a_fast_server(standin, tmp_path, gen_cpus):
    result = run_rate(standin.url, tmp_path, rate_rps=200, duration_s=3, cpus=gen_cpus)
    records = sorted(result.records, key=lambda r: r.intended_s)
    assert len(records) == result.lag.scheduled == 600
    assert result.load.errors == 0 and result.lag.overflow == 0
    intended = [r.intended_s for r in records]
    assert intended[-1] - intended[0] == pytest.approx(599 / 200, abs=0.01)  # the schedule, not the responses
    # sends happened close to their scheduled times (generous: the machine is shared)
    assert result.lag.p50_ms < 20
    assert result.lag.kept and not result.load.generator_saturated
    assert result.load.request_rate_rps == pytest.approx(200, rel=0.1)
    assert all(r.source == "rate" and r.latency_ms >= (r.sent_s - r.intended_s) * 1000 - 1e-6 for r in records)


@pytest.mark.slow
def test_a_stalled_server_shows_as_latency_of_every_request_scheduled_during_the_stall(standin_factory, tmp_path, gen_cpus):
    server = standin_factory()
    rate, stall_s = 100, 0.8
    quit_waiting = threading.Event()

    def stall_once_load_flows() -> None:  # the generator's start-up time varies on a busy machine
        deadline = time.monotonic() + 30
        while not quit_waiting.is_set() and time.monotonic() < deadline:
            if server.count() >= 30:
                server.stall(stall_s)
                return
            time.sleep(0.02)

    staller = threading.Thread(target=stall_once_load_flows, daemon=True)
    staller.start()
    try:
        result = run_rate(server.url, tmp_path, rate_rps=rate, duration_s=3, cpus=gen_cpus, timeout_s=5)
    finally:
        quit_waiting.set()
        staller.join(timeout=10)
    records = sorted(result.records, key=lambda r: r.intended_s)
    assert result.load.errors == 0
    slow = [r for r in records if r.latency_ms > 200]
    # open loop: about rate * (stall - 0.2 s) requests went out during the stall and waited for its end
    assert len(slow) >= 0.5 * rate * (stall_s - 0.2)
    assert max(r.latency_ms for r in records) >= 0.6 * stall_s * 1000
    # latency from the schedule: waits shrink for requests scheduled later in the stall
    first, last = slow[0], slow[-1]
    assert first.latency_ms > last.latency_ms
    assert (first.latency_ms - last.latency_ms) == pytest.approx((last.intended_s - first.intended_s) * 1000, abs=150)


@pytest.mark.slow
def test_in_flight_cap_records_overflow_as_errors_and_never_skips_the_schedule(standin_factory, tmp_path, gen_cpus):
    server = standin_factory()
    server.stall(30)  # nothing answers during the run
    result = run_rate(server.url, tmp_path, rate_rps=50, duration_s=1.5, cpus=gen_cpus, timeout_s=0.5,
                      max_in_flight=5)
    records = result.records
    assert len(records) == result.lag.scheduled == 75
    overflow = [r for r in records if r.error == OVERFLOW_ERROR]
    assert len(overflow) == result.lag.overflow > 0
    assert all(not r.ok and math.isnan(r.latency_ms) for r in overflow)
    timeouts = [r for r in records if r.error.startswith("timeout")]
    assert timeouts and all(r.status == 0 for r in timeouts)
    assert result.load.ok == 0 and result.load.errors_by_status == {"0": 75}


@pytest.mark.slow
def test_sigterm_ends_the_generator_early_with_every_sent_request_flushed(standin, tmp_path):
    import json

    from harness import processes
    from harness.load.rate import CONFIG_FILE, SUMMARY_FILE, RateConfig
    from harness.request_records import REQUESTS_FILE, RequestRecord, read_records

    config = RateConfig(host=standin.url, rate_rps=100, duration_s=60)
    (tmp_path / CONFIG_FILE).write_text(config.model_dump_json())
    proc = processes.spawn(processes.python_argv("harness.load.rate", str(tmp_path / CONFIG_FILE)))
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / REQUESTS_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        code = processes.stop(proc, grace_s=10)
    assert code == 0  # a clean exit, not a kill
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    records = list(read_records(tmp_path / REQUESTS_FILE, RequestRecord))
    assert summary["stopped_early"] and summary["scheduled"] == len(records) > 0
    assert all(r.ok for r in records)


def test_a_relative_out_dir_reaches_the_generator_absolute_and_no_records_is_a_failed_run(tmp_path, monkeypatch):
    from harness.errors import HarnessError

    from .fake_generator import hand_over_to_fake, read_seen

    hand_over_to_fake(monkeypatch, tmp_path / "seen.json")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HarnessError) as info:
        run_rate("http://127.0.0.1:9", "rel/dir", rate_rps=1, duration_s=1, startup_grace_s=10)
    out = tmp_path.resolve() / "rel" / "dir"
    first_line = str(info.value).splitlines()[0]
    assert str(out / "requests.csv") in first_line and "exit code 0" in first_line
    [config] = read_seen(tmp_path / "seen.json")["argv"]
    assert Path(config) == out / "rate_config.json"


def test_one_generator_alternates_hosts_in_blocks_and_records_each_target(standin_factory, tmp_path, gen_cpus):
    first, second = standin_factory(), standin_factory()
    result = run_rate(first.url, tmp_path, rate_rps=40, duration_s=1.0, cpus=gen_cpus, alternate_hosts=[second.url],
                      alternate_every=4)
    records = sorted(result.records, key=lambda r: r.intended_s)
    assert len(records) == 40 and result.load.errors == 0
    # requests 0-3 to the first host, 4-7 to the second, 8-11 to the first, ...
    assert [r.target for r in records] == [first.url if (i // 4) % 2 == 0 else second.url for i in range(40)]
    assert first.count() >= 20 and second.count() >= 20  # each stand-in answered its share (plus probes)
    with pytest.raises(ConfigError, match="alternate_hosts"):
        run_rate(first.url, tmp_path, rate_rps=10, duration_s=1, alternate_hosts=["127.0.0.1:9"])
