"""The headless Locust runner: bounded child process, every request recorded, exact percentiles."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest

from harness.load.locust_runner import run_locust
from harness.load.profiles import LoadProfile
from harness.request_records import RequestRecord, read_records


def _user_counts(history_csv) -> list[int]:
    with open(history_csv, newline="") as handle:
        return [int(row["User Count"]) for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]


@pytest.mark.slow
def test_spike_profile_runs_bounded_and_records_every_request(standin, tmp_path, gen_cpus):
    profile = LoadProfile(kind="spike", duration_s=5, spike_base_users=1, spike_peak_users=6,
                          spike_start_s=2, spike_length_s=2, think_time_s=0.002)
    began = time.monotonic()
    result = run_locust(standin.url, profile, tmp_path, cpus=gen_cpus)
    elapsed = time.monotonic() - began
    assert elapsed < profile.duration_s + 30  # start-up, run and stop, well inside the hard deadline
    assert not result.hard_killed and result.exit_code == 0
    # every request Locust counted is in requests.csv
    assert result.requests > 0
    assert result.requests == result.extra["locust_requests"]
    assert result.errors == 0 and result.ok == result.requests
    # the spike really happened: Locust's own history shows base, peak, base
    counts = _user_counts(tmp_path / "locust_stats_history.csv")
    assert max(counts) == 6
    assert 1 in counts[counts.index(6):]  # back to the base after the spike
    # exact percentiles agree with numpy on the recorded latencies
    latencies = [r.latency_ms for r in read_records(tmp_path / "requests.csv", RequestRecord) if r.ok]
    for q, value in ((50, result.p50_ms), (95, result.p95_ms), (99, result.p99_ms)):
        assert value == pytest.approx(float(np.percentile(latencies, q)), rel=1e-12, abs=1e-12)
    assert result.throughput_rps == pytest.approx(result.ok / result.duration_s)
    assert result.extra["locust_p99_ms"] is not None  # Locust's own (bucketed) figure, kept for comparison
    assert result.generator_cpu.samples >= 2 and math.isfinite(result.generator_cpu.mean_percent)
    assert isinstance(result.generator_saturated, bool)
    assert "locust" not in sys.modules


@pytest.mark.slow
def test_failed_requests_are_recorded_with_status_and_error(tmp_path, gen_cpus):
    # a port nobody listens on: every request fails to connect
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    profile = LoadProfile(kind="steady", users=1, duration_s=2, think_time_s=0.05, request_timeout_s=1)
    result = run_locust(f"http://127.0.0.1:{port}", profile, tmp_path, cpus=gen_cpus)
    assert result.requests > 0 and result.ok == 0
    assert result.errors_by_status == {"0": result.requests}
    assert result.exit_code == 1  # Locust's exit code for a run with failures, still a valid run
    records = list(read_records(tmp_path / "requests.csv", RequestRecord))
    assert all(not r.ok and r.status == 0 and r.error for r in records)
    assert math.isnan(result.p99_ms)  # no successful request: no latency figures, never a fake zero


@pytest.mark.slow
def test_a_generator_that_overruns_is_killed_and_leaves_nothing(standin, tmp_path, gen_cpus):
    profile = LoadProfile(kind="steady", users=1, duration_s=30, think_time_s=0.05)
    began = time.monotonic()
    result = run_locust(standin.url, profile, tmp_path, cpus=gen_cpus, stop_timeout_s=1, deadline_s=4)
    assert time.monotonic() - began < 20
    assert result.hard_killed
    assert result.requests > 0  # what it recorded before the kill is kept (flushed on SIGTERM)
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]


@pytest.mark.parametrize("exit_code", [0, 1])
def test_a_relative_out_dir_reaches_locust_absolute_and_no_records_is_a_failed_run(tmp_path, monkeypatch, exit_code):
    # Locust runs in its output directory: a relative path handed to it once put every record in <out>/<out>/
    from harness.errors import HarnessError

    from .fake_generator import hand_over_to_fake, path_arguments, read_seen

    hand_over_to_fake(monkeypatch, tmp_path / "seen.json", exit_code)
    monkeypatch.chdir(tmp_path)
    profile = LoadProfile(kind="steady", users=1, duration_s=1)
    with pytest.raises(HarnessError) as info:
        run_locust("http://127.0.0.1:9", profile, "rel/dir", startup_grace_s=10)
    out = tmp_path.resolve() / "rel" / "dir"
    first_line = str(info.value).splitlines()[0]
    assert str(out / "requests.csv") in first_line and f"exit code {exit_code}" in first_line
    assert info.value.exit_code == 3
    seen = read_seen(tmp_path / "seen.json")
    assert seen["cwd"] == str(out)
    handed = path_arguments(seen)
    assert str(out / "requests.csv") in handed and any(a.startswith(str(out / "locust")) for a in handed)
    assert all(Path(a).is_absolute() for a in handed), handed
    assert not (out / "rel").exists()


# Locust's own aggregate of its final summary, computed by Locust's code in a process of its own (this
# one must never import Locust): the figures result.json's ``locust`` block must agree with.
_LOCUST_OWN_FIGURES = """
import json, sys
from locust.stats import RequestStats, StatsEntry
stats = RequestStats()
for data in json.load(open(sys.argv[1])):
    entry = StatsEntry.unserialize(data, stats)
    # JSON made the bucket keys strings: as strings "110" sorts before "40", so give them back as numbers
    entry.response_times = {int(float(k)): v for k, v in entry.response_times.items()}
    stats.total.extend(entry)
print(json.dumps({"requests": stats.total.num_requests, "failures": stats.total.num_failures,
                  **{key: stats.total.get_response_time_percentile(q)
                     for key, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))}}))
"""


def _aggregated_csv_requests(stats_csv) -> int:
    with open(stats_csv, newline="") as handle:
        return [int(row["Request Count"]) for row in csv.DictReader(handle) if row["Name"] == "Aggregated"][-1]


@pytest.mark.slow
def test_result_json_takes_locusts_figures_from_its_final_summary(standin_factory, tmp_path, gen_cpus):
    from harness.load.session import run_session

    # requests in flight as the run ends are the ones Locust's last stats CSV snapshot misses
    server = standin_factory("--delay-ms", "40")
    deployment = SimpleNamespace(endpoint=server.url, replicas=lambda: [])
    profile = LoadProfile(kind="steady", users=4, duration_s=3, think_time_s=0.01)
    result = run_session(deployment, profile, tmp_path, generator_cpus=gen_cpus, prober=False, telemetry=False)
    own = json.loads(subprocess.run([sys.executable, "-c", _LOCUST_OWN_FIGURES, str(tmp_path / "locust_summary.json")],
                                    capture_output=True, text=True, check=True, timeout=120).stdout)

    block = result["locust"]
    assert block["requests"] == own["requests"] == result["requests"] > 0  # every request Locust counted is recorded
    assert block["failures"] == own["failures"] == 0
    # (Locust's code hands a bucket key back as the number it is)
    assert [block[k] for k in ("p50_ms", "p95_ms", "p99_ms")] == [float(own[k]) for k in ("p50_ms", "p95_ms", "p99_ms")]
    assert json.loads((tmp_path / "result.json").read_text())["locust"] == block
    # the stats CSV is a snapshot: never more than the summary, and not what the block reports
    assert _aggregated_csv_requests(tmp_path / "locust_stats.csv") <= own["requests"]
    assert "locust" not in sys.modules
