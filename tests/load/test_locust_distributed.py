"""Locust's distributed mode on this machine: a master and N workers, every worker's requests merged exactly
into one requests.csv, the generator judged per worker and overall in result.json."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import psutil
import pytest

from harness.errors import ConfigError
from harness.load.locust_runner import run_locust
from harness.load.profiles import LoadProfile
from harness.request_records import RequestRecord, read_records


def test_workers_outside_the_range_are_one_config_error_naming_the_field(tmp_path):
    profile = LoadProfile(kind="steady", users=1, duration_s=1)
    for bad in (0, 65, True):
        with pytest.raises(ConfigError) as info:
            run_locust("http://127.0.0.1:9", profile, tmp_path, workers=bad)
        assert info.value.field == "workers"


@pytest.mark.parametrize("env, named", [
    ({"HARNESS_LOCUST_MASTER_PORT": "0"}, "HARNESS_LOCUST_MASTER_PORT"),
    ({"HARNESS_LOCUST_MASTER_PORT": "http"}, "HARNESS_LOCUST_MASTER_PORT"),
    ({"HARNESS_LOCUST_MASTER_PORT": "5557", "HARNESS_LOCUST_WORKERS": "0"}, "HARNESS_LOCUST_WORKERS"),
])
def test_a_bad_external_master_setting_is_one_config_error_naming_the_variable(env, named):
    from harness.load.locust_distributed import external_master

    with pytest.raises(ConfigError) as info:
        external_master(env)
    assert info.value.field == named


def test_an_external_master_waits_for_the_workers_its_environment_names():
    from harness.load.locust_distributed import external_master

    assert external_master({}) is None
    assert external_master({"HARNESS_LOCUST_MASTER_PORT": "5557"}) == (5557, 1)
    assert external_master({"HARNESS_LOCUST_MASTER_PORT": " 6000 ", "HARNESS_LOCUST_WORKERS": "8"}) == (6000, 8)


@pytest.mark.slow
def test_a_master_and_two_workers_record_every_request_once_merged_and_judged_per_worker(standin, tmp_path, gen_cpus):
    from harness.load.session import run_session

    profile = LoadProfile(kind="steady", users=4, duration_s=2, think_time_s=0.01)
    deployment = SimpleNamespace(endpoint=standin.url, replicas=lambda: [])
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result = run_session(deployment, profile, tmp_path, generator_cpus=gen_cpus, prober=False, telemetry=False,
                         load_workers=2)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before  # master and workers are gone
    shares = [list(read_records(tmp_path / "workers" / str(i) / "requests.csv", RequestRecord)) for i in (0, 1)]
    assert all(len(share) > 0 for share in shares)  # the master handed users to both workers
    merged = list(read_records(tmp_path / "requests.csv", RequestRecord))
    assert len(merged) == sum(map(len, shares)) == result["requests"]
    # every request Locust's master counted (from both workers' reports) is in the merged file
    assert result["locust"]["requests"] == result["requests"] and result["locust"]["failures"] == 0
    latencies = np.array([r.latency_ms for share in shares for r in share if r.ok])
    assert [result[k] for k in ("p50_ms", "p95_ms", "p99_ms")] == list(np.percentile(latencies, [50, 95, 99]))
    generator = result["generator"]
    assert generator["workers"] == 2 and [w["index"] for w in generator["worker_loads"]] == [0, 1]
    assert [w["requests"] for w in generator["worker_loads"]] == [len(share) for share in shares]
    assert all(w["cpu"]["samples"] > 0 for w in generator["worker_loads"]) and generator["master_cpu"]["samples"] > 0
    assert isinstance(result["generator_saturated"], bool) and json.loads((tmp_path / "result.json").read_text())["generator"]
    assert "locust" not in sys.modules


@pytest.mark.slow
def test_workers_elsewhere_take_the_masters_profile_and_send_it_their_records(standin, tmp_path, monkeypatch):
    """The in-cluster layout on one machine: the master alone here (HARNESS_LOCUST_MASTER_PORT), workers started
    apart without a profile or a records file, as the rendered worker Deployment starts them."""
    from harness import processes
    from harness.load.locust_distributed import ENV_EXPECT_WORKERS, ENV_MASTER_PORT, _free_port, locust_worker_argv
    from harness.load.locust_runner import LOCUSTFILE
    from harness.load.profiles import ENV_PROFILE, ENV_RECORDS_TO_MASTER, ENV_REQUESTS_FILE

    port = _free_port()
    monkeypatch.setenv(ENV_MASTER_PORT, str(port))
    monkeypatch.setenv(ENV_EXPECT_WORKERS, "2")  # the master waits for both: neither joins a running test late
    workers = [processes.spawn(locust_worker_argv(LOCUSTFILE, "127.0.0.1", port), log_path=tmp_path / f"worker-{i}.log",
                               env={ENV_PROFILE: None, ENV_REQUESTS_FILE: None, ENV_RECORDS_TO_MASTER: "1"})
               for i in range(2)]
    try:
        profile = LoadProfile(kind="steady", users=4, duration_s=2, think_time_s=0.01, model="tiny-mlp")
        result = run_locust(standin.url, profile, tmp_path / "run")
    finally:
        for worker in workers:
            processes.stop(worker)
    # every request the master counted reached it from a worker, and was written once
    assert result.requests == result.extra["locust_requests"] > 0 and result.errors == 0
    entries = json.loads((tmp_path / "run" / "locust_summary.json").read_text())
    assert {e["name"] for e in entries} == {"/v2/models/tiny-mlp/infer"}  # the master's profile, not the default model
    loads = result.extra["worker_loads"]
    assert len(loads) == 2 and sum(w["requests"] for w in loads) == result.requests and all(w["requests"] for w in loads)
    assert all(w["cpu"]["samples"] > 0 for w in loads)  # each worker's CPU, from its heartbeats
    merged = list(read_records(tmp_path / "run" / "requests.csv", RequestRecord))
    assert [r.intended_s for r in merged] == sorted(r.intended_s for r in merged)
