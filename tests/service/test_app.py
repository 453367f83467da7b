"""The HTTP service in-process: v2 endpoints, error statuses, batching, the bounded queue, metrics."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable

import httpx
import pytest

from harness.service.client import inject_fault, scrape_metrics
from harness.service.registry import example_request

from .conftest import TOKEN


def _infer(base_url: str, batch: int = 1, timeout_s: float = 30.0) -> httpx.Response:
    return httpx.post(f"{base_url}/v2/models/tiny-mlp/infer", json=example_request("tiny-mlp", batch), timeout=timeout_s)


def test_health_metadata_and_inference(service: Any) -> None:
    base = service.base_url
    assert httpx.get(f"{base}/v2/health/live").status_code == 200
    assert httpx.get(f"{base}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{base}/v2/models/tiny-mlp/ready").status_code == 200
    assert httpx.get(f"{base}/v2/models/tiny-mlp/versions/1/ready").status_code == 200
    server = httpx.get(f"{base}/v2").json()
    assert {"name", "version", "extensions"} <= set(server) and "model_repository" in server["extensions"]
    metadata = httpx.get(f"{base}/v2/models/tiny-mlp").json()
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 32]}]
    response = _infer(base, batch=3)
    assert response.status_code == 200
    output = response.json()["outputs"][0]
    assert output["name"] == "scores" and output["shape"] == [3, 4] and len(output["data"]) == 12
    versioned = httpx.post(f"{base}/v2/models/tiny-mlp/versions/1/infer", json=example_request("tiny-mlp", 1))
    assert versioned.status_code == 200 and versioned.json()["model_version"] == "1"
    index = httpx.post(f"{base}/v2/repository/index", json={})
    assert index.json() == [{"name": "tiny-mlp", "version": "1", "state": "READY"}]


def test_same_input_gives_same_output_alone_or_in_a_batch(service: Any) -> None:
    single = _infer(service.base_url, batch=1).json()["outputs"][0]["data"]
    batched = _infer(service.base_url, batch=3).json()["outputs"][0]["data"]
    assert batched[:4] == pytest.approx(single, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        ("POST", "/v2/models/tiny-mlp/infer", b"{not json", 400, "malformed JSON"),
        ("POST", "/v2/models/tiny-mlp/infer", b'{"inputs": []}', 400, "inputs=[]: must be a non-empty list"),
        ("POST", "/v2/models/tiny-mlp/infer", b'{"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}', 400, "shape"),
        ("POST", "/v2/models/tiny-mlp/infer", b'{"inputs": [{"name": "features", "shape": [1, 32], "datatype": "INT32", "data": [1]}]}', 400, "datatype"),
        ("POST", "/v2/models/nope/infer", b"{}", 404, "unknown model 'nope'"),
        ("GET", "/v2/models/nope", b"", 404, "unknown model 'nope'"),
        ("GET", "/v2/models/tiny-mlp/versions/7", b"", 404, "unknown version '7'"),
        ("GET", "/v2/models/tiny-mlp/infer", b"", 405, "not allowed"),
        ("GET", "/elsewhere", b"", 404, "no route"),
        ("POST", "/v2/models/tiny-mlp/infer", b'{"inputs":[{"name":["features"],"shape":[1,32],"datatype":"FP32","data":[0]}]}', 400,
         "inputs[0].name=['features']: unknown input"),
        ("POST", "/v2/models/tiny-mlp/infer", b'{"inputs":[{"name":"features","shape":[576460752303423488,32],"datatype":"FP32","data":[]}]}',
         400, "batch size 576460752303423488 exceeds max_batch_size"),
        ("PUT", "/v2/models/tiny-mlp/infer", b"{}", 405, "use POST"),
        ("POST", "/v2/faults/crash", b"x" * 70_000, 413, "exceeds the fault-hook body limit=65536"),
    ],
)
def test_each_bad_request_class_gets_its_status_and_a_json_error(service: Any, method: str, path: str, body: bytes, status: int, message: str) -> None:
    response = httpx.request(method, service.base_url + path, content=body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert _infer(service.base_url).status_code == 200  # still healthy


def test_body_over_the_limit_is_413(start_service: Callable[..., Any]) -> None:
    service = start_service(max_body_bytes=2048)
    response = _infer(service.base_url, batch=4)  # ~3 kB of JSON
    assert response.status_code == 413 and "max_body_bytes=2048" in response.json()["error"]
    assert _infer(service.base_url, batch=1).status_code == 200


def test_a_body_over_the_limit_is_read_and_dropped_so_the_413_arrives_and_the_connection_stays(start_service: Callable[..., Any]) -> None:
    service = start_service(max_body_bytes=2048)
    with httpx.Client(base_url=service.base_url) as client:
        for content in (b"x" * 100_000, (b"x" * 10_000 for _ in range(10))):  # a Content-Length over the limit; chunked
            refused = client.post("/v2/models/tiny-mlp/infer", content=content)
            assert refused.status_code == 413 and "max_body_bytes=2048" in refused.json()["error"]
            assert "connection" not in refused.headers  # read to its end: the connection can carry the next request
        assert client.post("/v2/models/tiny-mlp/infer", json=example_request("tiny-mlp", 1)).status_code == 200
    waiting = httpx.post(f"{service.base_url}/v2/models/tiny-mlp/infer", content=b"x" * 100_000, headers={"expect": "100-continue"})
    assert waiting.status_code == 413 and waiting.headers["connection"] == "close"  # it sent nothing: nothing to read


def test_concurrent_requests_form_batches_larger_than_one(start_service: Callable[..., Any]) -> None:
    service = start_service(max_queue_delay_ms=200.0, max_batch_size=16)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: _infer(service.base_url).status_code, range(12)))
    assert statuses == [200] * 12
    metrics = scrape_metrics(service.base_url)
    forward_passes = metrics['harness_batch_size_count{model="tiny-mlp"}']  # warm-up passes are not counted
    assert metrics['harness_batch_size_sum{model="tiny-mlp"}'] == 12
    assert forward_passes < 12  # so at least one forward pass served several requests
    assert metrics['harness_batch_size_bucket{model="tiny-mlp",le="1"}'] < forward_passes


def test_a_full_queue_answers_503_with_retry_after(start_service: Callable[..., Any]) -> None:
    service = start_service(max_queue_size=2, max_batch_size=1, max_queue_delay_ms=0.0)
    inject_fault(service.base_url, "slow-inference", TOKEN, {"delay_ms": 300, "duration_s": 30})
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: _infer(service.base_url), range(10)))
    refused = [r for r in responses if r.status_code == 503]
    assert refused, [r.status_code for r in responses]
    assert all(r.headers["retry-after"] == "1" and "queue full" in r.json()["error"] for r in refused)
    assert {r.status_code for r in responses} == {200, 503}


def test_readiness_waits_for_the_model_while_liveness_answers(start_service: Callable[..., Any]) -> None:
    service = start_service(wait=False, startup_delay_s=1.5)
    live = httpx.get(f"{service.base_url}/v2/health/live")
    ready = httpx.get(f"{service.base_url}/v2/health/ready")
    assert live.status_code == 200
    assert ready.status_code == 503 and "loading" in ready.json()["error"]
    assert _infer(service.base_url).status_code == 503
    assert httpx.post(f"{service.base_url}/v2/repository/index", json={"ready": True}).json() == []
    deadline = time.monotonic() + 60
    while httpx.get(f"{service.base_url}/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert service.app.metrics.model_load_s >= 1.5


def test_liveness_can_fail_during_load(start_service: Callable[..., Any]) -> None:
    service = start_service(wait=False, startup_delay_s=1.0, live_during_load=False)
    assert httpx.get(f"{service.base_url}/v2/health/live").status_code == 503


def test_metrics_are_prometheus_text_with_the_documented_series(service: Any) -> None:
    _infer(service.base_url)
    httpx.post(f"{service.base_url}/v2/models/nope/infer", content=b"{}")
    response = httpx.get(f"{service.base_url}/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for series in (
        'harness_requests_total{model="tiny-mlp",code="200"} 1',
        'harness_requests_total{model="unknown",code="404"} 1',
        "# TYPE harness_request_duration_seconds histogram",
        'harness_request_duration_seconds_bucket{model="tiny-mlp",le="+Inf"} 1',
        "# TYPE harness_batch_size histogram",
        'harness_queue_depth{model="tiny-mlp"} 0',
        "harness_model_load_seconds",
        "harness_process_resident_memory_bytes",
    ):
        assert series in text, series
    import pynvml

    try:
        pynvml.nvmlInit()
        has_gpu = pynvml.nvmlDeviceGetCount() > 0
    except pynvml.NVMLError:
        has_gpu = False
    assert ("harness_gpu_memory_used_bytes" in text) == has_gpu  # absent GPU: absent series, never zeros
