"""The service benchmark: its raw loop, load generator, end-to-end run (tiny model) and CLI."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import psutil
import pytest

from harness.bench.rawloop import measure_raw
from harness.bench.servicebench import BenchSettings, pick_cores, run_service_bench
from harness.cli import main as cli_main
from harness.cli.bench import format_table
from harness.config import resolve_service_config
from harness.load.closed_loop import run_closed_loop
from harness.service.registry import example_request

REQUIRED_KEYS = {
    "raw_samples_per_s", "service_samples_per_s", "naive_samples_per_s", "efficiency", "speedup_vs_naive",
    "p50_ms", "p99_ms", "model", "precision", "max_batch_size", "concurrency", "server_cores", "client_cores",
}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights")


def test_pick_cores_separates_server_and_client_when_it_can() -> None:
    server, client = pick_cores()
    assert server and client
    if len(os.sched_getaffinity(0)) >= 2:
        assert not set(server) & set(client)


def test_raw_loop_measures_batched_throughput(weights_dir: Path) -> None:
    result = measure_raw("tiny-mlp", "fp32", batch=8, duration_s=0.2, torch_threads=1, weights_dir=str(weights_dir))
    assert result["iterations"] >= 3 and result["samples_per_s"] > 0 and result["batch"] == 8
    assert result["forward_p50_ms"] <= result["forward_p99_ms"]


def test_load_generator_counts_only_the_measured_window(weights_dir: Path) -> None:
    from harness.service.server import ServiceThread

    config = resolve_service_config({"model": "tiny-mlp", "port": 0, "weights_dir": str(weights_dir), "max_queue_delay_ms": 2}, env={})
    with ServiceThread(config) as service:
        from harness.service.client import wait_ready

        wait_ready(service.base_url, 60)
        body = orjson.dumps(example_request("tiny-mlp", 1))
        result = asyncio.run(run_closed_loop(f"{service.base_url}/v2/models/tiny-mlp/infer", body, 1, 4, warmup_s=0.2, duration_s=0.8))
    assert result["requests_ok"] > 0 and result["errors"] == 0 and result["statuses"] == {"200": result["requests_ok"]}
    assert result["samples_per_s"] == pytest.approx(result["requests_ok"] / 0.8, rel=0.01)
    assert 0 < result["p50_ms"] <= result["p99_ms"]


@pytest.mark.slow
def test_service_bench_end_to_end_reports_every_key_and_leaves_no_process(weights_dir: Path) -> None:
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    settings = BenchSettings(model="tiny-mlp", max_batch_size=4, concurrency=8, duration_s=1.0, rounds=1, warmup_s=0.3, weights_dir=str(weights_dir))
    result = run_service_bench(settings)
    assert REQUIRED_KEYS <= set(result)
    assert result["model"] == "tiny-mlp" and result["concurrency"] == 8 and result["max_batch_size"] == 4
    assert result["raw_samples_per_s"] > 0 and result["service_samples_per_s"] > 0 and result["naive_samples_per_s"] > 0
    assert result["efficiency"] == pytest.approx(result["service_samples_per_s"] / result["raw_samples_per_s"], rel=0.01)
    assert result["service_errors"] == 0 and result["naive_errors"] == 0
    assert "efficiency (service/raw)" in format_table(result)
    leftovers = [child for child in psutil.Process().children(recursive=True) if child.pid not in before and child.is_running()]
    assert [child for child in leftovers if child.status() != psutil.STATUS_ZOMBIE] == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "model='nope'"),
        (["--max-batch-size", "0"], "max_batch_size=0"),
        (["--concurrency", "0"], "concurrency=0"),
    ],
)
def test_bench_cli_refuses_bad_values_naming_them(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "service", *args]) == 2
    assert message in capsys.readouterr().err


def test_bench_cli_without_a_benchmark_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench"]) == 2
    assert "choose a benchmark" in capsys.readouterr().err
