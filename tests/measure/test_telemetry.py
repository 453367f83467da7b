"""Telemetry sampler: real child processes (restarted, killed), GPU absent for real and present via FakeNvml."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pynvml
import pytest

from harness.gpu import FakeNvml, query_gpus
from harness.measure import telemetry
from harness.measure.telemetry import COLUMNS, TelemetrySampler, is_device_row, read_telemetry

NEVER_S = 3600.0  # an interval the thread never reaches: the test drives sample_once itself
HOLD_MB = 64


@pytest.fixture
def spawn():
    """Start bounded child processes (each exits by itself within 60 s); kill them all afterwards."""
    children: list[subprocess.Popen] = []

    def start(code: str = "import time; time.sleep(60)") -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code])
        children.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def _hold_memory() -> str:
    # bytearray * n writes every page, so the memory really is resident (a zeroed calloc would not be)
    return f"import time; block = bytearray(b'x') * ({HOLD_MB} * 2**20); print('ready', flush=True); time.sleep(60)"


def _patch_nvml(monkeypatch, fake: FakeNvml) -> None:
    for name, fn in fake.functions().items():
        monkeypatch.setattr(pynvml, name, fn)


def _wait_for(condition, deadline_s: float = 20.0, what: str = "condition"):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")


def test_interval_must_be_positive(tmp_path: Path):
    with pytest.raises(ValueError, match="interval_s=0"):
        TelemetrySampler(tmp_path / "t.csv", {}, interval_s=0)


def test_replica_rss_and_cpu_and_absent_gpu(tmp_path: Path, spawn, monkeypatch):
    _patch_nvml(monkeypatch, FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    child = spawn(_hold_memory())
    path = tmp_path / "telemetry.csv"
    with TelemetrySampler(path, {"replica-0": child.pid}, interval_s=NEVER_S) as sampler:
        assert not sampler.gpu_present and "NVML library" in sampler.gpu_absent_reason
        rows = _wait_for(lambda: [r for r in sampler.sample_once() if r["rss_mb"] > HOLD_MB], what="child RSS")
    row = rows[0]
    assert row["replica"] == "replica-0" and row["pid"] == child.pid
    assert row["cpu_percent"] is not None and row["cpu_percent"] >= 0  # primed at start()
    # absent is marked, never written as zero
    assert row["gpu_present"] == 0
    assert all(row[c] is None for c in ("gpu_index", "gpu_util_percent", "gpu_memory_used_mb", "gpu_power_w"))
    saved = read_telemetry(path)
    assert saved and all(r["gpu_present"] is False and r["gpu_util_percent"] is None for r in saved)
    assert set(saved[0]) == set(COLUMNS)


def test_real_nvml_state_matches_inventory(tmp_path: Path, spawn):
    child = spawn()
    with TelemetrySampler(tmp_path / "t.csv", {"r": child.pid}, interval_s=NEVER_S) as sampler:
        rows = sampler.sample_once()
    inventory = query_gpus()
    assert sampler.gpu_present == inventory.present
    if not inventory.present:
        assert sampler.gpu_absent_reason == inventory.reason
        assert [r["replica"] for r in rows] == ["r"] and rows[0]["gpu_util_percent"] is None


def test_busy_process_shows_cpu_use(tmp_path: Path, spawn, monkeypatch):
    _patch_nvml(monkeypatch, FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    busy = spawn("import time\nend = time.time() + 30\nwhile time.time() < end: pass")
    with TelemetrySampler(tmp_path / "t.csv", {"busy": busy.pid}, interval_s=0.2) as sampler:
        # the machine is shared, so ask only for clearly non-idle, with a generous deadline
        _wait_for(lambda: any((r["cpu_percent"] or 0) > 10 for r in sampler.rows()), what="CPU use of a busy loop")


def test_restarted_replica_is_followed_and_killed_one_skipped(tmp_path: Path, spawn, monkeypatch):
    _patch_nvml(monkeypatch, FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    first, other = spawn(), spawn()
    pids = {"replica-0": first.pid, "replica-1": other.pid}
    with TelemetrySampler(tmp_path / "t.csv", lambda: dict(pids), interval_s=NEVER_S) as sampler:
        assert {r["pid"] for r in sampler.sample_once()} == {first.pid, other.pid}

        first.kill()  # not reaped yet: a zombie has no memory or CPU to report
        _wait_for(lambda: psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE, what="zombie")
        assert [r["replica"] for r in sampler.sample_once()] == ["replica-1"]
        first.wait(timeout=10)
        rows = sampler.sample_once()  # the platform has not noticed yet: the pid is gone mid-sample
        assert [r["replica"] for r in rows] == ["replica-1"]

        second = spawn()
        pids["replica-0"] = second.pid  # restarted with a new pid
        rows = {r["replica"]: r for r in sampler.sample_once()}
        assert rows["replica-0"]["pid"] == second.pid
        assert rows["replica-0"]["cpu_percent"] is None  # first sight of a process only primes its counter
        assert rows["replica-1"]["cpu_percent"] is not None
        assert sampler.sample_once()[0]["cpu_percent"] is not None

        pids["replica-1"] = None  # a replica that is down has no row
        assert [r["replica"] for r in sampler.sample_once()] == ["replica-0"]
        assert sampler.errors == 0  # vanishing replicas are normal, not errors


def test_failing_pid_source_is_logged_and_skipped(tmp_path: Path, spawn, monkeypatch, caplog):
    _patch_nvml(monkeypatch, FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    child = spawn()
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("state file half written")
        return {"r": child.pid}

    with caplog.at_level(logging.WARNING, logger=telemetry.__name__):
        with TelemetrySampler(tmp_path / "t.csv", flaky, interval_s=NEVER_S) as sampler:
            results = [sampler.sample_once() for _ in range(3)]  # calls 2, 3 (fails), 4
    assert [len(r) for r in results] == [1, 0, 1]
    assert sampler.errors == 1 and sampler.samples_taken == 2
    assert "state file half written" in caplog.text
    assert len(read_telemetry(tmp_path / "t.csv")) == 2


def test_gpu_columns_from_nvml_when_present(tmp_path: Path, spawn, monkeypatch):
    child, cpu_only = spawn(), spawn()
    fake = FakeNvml([
        {"name": "NVIDIA A10", "memory_total_mb": 23028, "memory_used_mb": 1500, "util_percent": 87,
         "power_w": 142.5, "processes": {child.pid: 1200}},
        {"name": "NVIDIA A10", "memory_total_mb": 23028, "memory_used_mb": 0, "util_percent": 0,
         "power_w": None, "processes": {}},
    ])
    _patch_nvml(monkeypatch, fake)
    path = tmp_path / "t.csv"
    with TelemetrySampler(path, {"gpu-replica": child.pid, "cpu-replica": cpu_only.pid}, interval_s=NEVER_S) as s:
        assert s.gpu_present
        rows = {r["replica"]: r for r in s.sample_once()}
    assert fake.initialised == 0  # the NVML session was shut down with the sampler
    on_gpu = rows["gpu-replica"]
    assert (on_gpu["gpu_index"], on_gpu["gpu_util_percent"], on_gpu["gpu_memory_used_mb"], on_gpu["gpu_power_w"]) == (
        0, 87.0, 1200.0, 142.5)
    assert rows["cpu-replica"]["gpu_index"] is None and rows["cpu-replica"]["gpu_present"] == 1
    assert rows["gpu:0"]["gpu_memory_used_mb"] == 1500.0 and rows["gpu:0"]["pid"] is None
    assert rows["gpu:1"]["gpu_util_percent"] == 0.0  # a real idle reading is 0, unlike absence
    assert rows["gpu:1"]["gpu_power_w"] is None  # not supported by the board: None, not 0

    saved = read_telemetry(path)
    assert {r["replica"] for r in saved} == {"gpu-replica", "cpu-replica", "gpu:0", "gpu:1"}
    assert {r["replica"] for r in read_telemetry(path, devices=False)} == {"gpu-replica", "cpu-replica"}
    assert is_device_row(rows["gpu:0"]) and not is_device_row(on_gpu)


def test_thread_samples_on_schedule_and_stops(tmp_path: Path, spawn, monkeypatch):
    _patch_nvml(monkeypatch, FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    child = spawn()
    path = tmp_path / "t.csv"
    sampler = TelemetrySampler(path, {"r": child.pid}, interval_s=0.1)
    try:
        sampler.start()
        with pytest.raises(RuntimeError, match="already started"):
            sampler.start()
        _wait_for(lambda: sampler.samples_taken >= 5, what="5 samples")
        # rows reach the file as they are taken, not only at stop
        _wait_for(lambda: len(read_telemetry(path)) >= 5, what="rows on disk")
    finally:
        sampler.stop()
    assert not any(t.name == "telemetry-sampler" and t.is_alive() for t in threading.enumerate())
    taken = sampler.samples_taken
    time.sleep(0.3)
    assert sampler.samples_taken == taken  # stopped means stopped
    times = [r["time_s"] for r in read_telemetry(path)]
    assert times == sorted(times)
    sampler.stop()  # idempotent


def test_reader_skips_a_row_cut_short_by_a_crash(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text(",".join(COLUMNS) + "\n"
                    "1.5,r,42,12.5,100.25,,,,,0\n"
                    "2.5,r,42,13.0,101.0,,,,,0\n"
                    "3.5,r,4")
    rows = read_telemetry(path)
    assert [r["time_s"] for r in rows] == [1.5, 2.5]
    assert rows[0] == {"time_s": 1.5, "replica": "r", "pid": 42, "cpu_percent": 12.5, "rss_mb": 100.25,
                       "gpu_index": None, "gpu_util_percent": None, "gpu_memory_used_mb": None,
                       "gpu_power_w": None, "gpu_present": False}
