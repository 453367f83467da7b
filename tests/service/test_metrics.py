"""Prometheus exposition: histogram arithmetic, label escaping, NVML series only when a GPU is seen."""

from __future__ import annotations

import sys
import types

import pytest

from harness.service.metrics import Histogram, ServiceMetrics, batch_buckets


def test_histogram_is_cumulative_with_sum_and_count() -> None:
    histogram = Histogram((1.0, 2.0, 4.0))
    for value in (0.5, 1.0, 3.0, 9.0):
        histogram.observe(value)
    lines = histogram.render("h", {"model": 'a"b'})
    assert lines[:4] == ['h_bucket{model="a\\"b",le="1"} 2', 'h_bucket{model="a\\"b",le="2"} 2',
                         'h_bucket{model="a\\"b",le="4"} 3', 'h_bucket{model="a\\"b",le="+Inf"} 4']
    assert lines[4:] == ['h_sum{model="a\\"b"} 13.5', 'h_count{model="a\\"b"} 4']


def test_batch_buckets_end_at_the_max_batch_size() -> None:
    assert batch_buckets(32) == (1, 2, 4, 8, 16, 32)
    assert batch_buckets(24) == (1, 2, 4, 8, 16, 24)
    assert batch_buckets(1) == (1,)


def _fake_pynvml(count: int) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetCount = lambda: count
    module.nvmlDeviceGetHandleByIndex = lambda index: index
    module.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(used=3 * 2**30, total=80 * 2**30)
    module.nvmlDeviceGetUtilizationRates = lambda handle: types.SimpleNamespace(gpu=75, memory=10)
    return module


@pytest.mark.parametrize("gpus", [0, 2])
def test_gpu_series_appear_only_when_nvml_sees_a_device(monkeypatch: pytest.MonkeyPatch, gpus: int) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(gpus))
    text = ServiceMetrics("tiny-mlp", 8).render(queue_depth=0, ready=True, faults=dict).decode()
    if gpus:
        assert 'harness_gpu_memory_used_bytes{gpu="1"} 3221225472' in text
        assert 'harness_gpu_utilization_ratio{gpu="0"} 0.75' in text
    else:
        assert "harness_gpu" not in text


def test_nvml_failure_means_no_gpu_series(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _fake_pynvml(1)

    def fail() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    broken.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert "harness_gpu" not in ServiceMetrics("tiny-mlp", 8).render(0, True, dict).decode()


def test_requests_and_faults_are_rendered() -> None:
    metrics = ServiceMetrics("tiny-mlp", 8)
    metrics.observe_request("tiny-mlp", 200, 0.004)
    metrics.observe_request("tiny-mlp", 503, 0.001)
    metrics.observe_batch(5, 0.01)
    metrics.model_load_s = 1.25
    text = metrics.render(queue_depth=3, ready=False, faults=lambda: {"hang": 1}).decode()
    assert 'harness_requests_total{model="tiny-mlp",code="503"} 1' in text
    assert 'harness_batch_size_bucket{model="tiny-mlp",le="4"} 0' in text
    assert 'harness_batch_size_bucket{model="tiny-mlp",le="8"} 1' in text
    assert 'harness_queue_depth{model="tiny-mlp"} 3' in text
    assert 'harness_ready{model="tiny-mlp"} 0' in text
    assert 'harness_model_load_seconds{model="tiny-mlp"} 1.25' in text
    assert 'harness_faults_active{kind="hang"} 1' in text
