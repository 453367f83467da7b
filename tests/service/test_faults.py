"""Fault hooks: bearer-token auth, validated parameters, and each fault taking effect and expiring."""

from __future__ import annotations

import time
from typing import Any, Callable

import httpx
import psutil
import pytest

from harness.service.client import ServiceRequestError, clear_faults, inject_fault, list_faults
from harness.service.registry import example_request

from .conftest import TOKEN


def _wait_until(condition: Callable[[], bool], timeout_s: float = 20.0, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(poll_s)


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_fault_hooks_refuse_missing_malformed_and_wrong_tokens(service: Any) -> None:
    url = f"{service.base_url}/v2/faults/hang"
    missing = httpx.post(url, json={"duration_s": 1})
    assert missing.status_code == 401 and "Authorization" in missing.json()["error"]
    assert httpx.post(url, json={}, headers={"Authorization": "Basic abc"}).status_code == 401
    wrong = httpx.post(url, json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "wrong fault token"
    assert httpx.get(f"{service.base_url}/v2/faults").status_code == 401
    assert httpx.delete(f"{service.base_url}/v2/faults", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert list_faults(service.base_url, TOKEN) == []  # nothing was injected


def test_fault_hooks_are_disabled_without_a_configured_token(start_service: Callable[..., Any]) -> None:
    service = start_service(fault_token=None)
    response = httpx.post(f"{service.base_url}/v2/faults/crash", json={}, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403
    assert response.json() == {"error": "fault hooks are disabled: no token configured"}


@pytest.mark.parametrize(
    "kind, params, status, message",
    [
        ("probe-delay", {"probe": "startup", "delay_s": 1}, 400, "probe='startup'"),
        ("probe-delay", {"probe": "live"}, 400, "delay_s: required"),
        ("slow-inference", {"delay_ms": -5}, 400, "delay_ms=-5"),
        ("slow-inference", {"delay_ms": 5, "duration_s": 0}, 400, "duration_s=0"),
        ("slow-inference", {"delay_ms": "5"}, 400, "delay_ms='5': must be a finite number"),
        ("slow-inference", {"factor": 0.9}, 400, "factor=0.9: must be >= 1.0"),
        ("slow-inference", {"factor": "fast"}, 400, "factor='fast': must be a finite number"),
        ("slow-inference", {"duration_s": 5}, 400, "delay_ms=None, factor=None: give delay_ms"),
        ("memory", {"rate_mb_s": 1, "target_mb": 1}, 400, "give exactly one"),
        ("memory", {"target_mb": 1, "max_mb": 5}, 400, "max_mb=5"),
        ("hang", {"duration_s": 1, "colour": "red"}, 400, "colour='red': unknown parameter"),
        ("crash", {"exit_code": 300}, 400, "exit_code=300"),
        ("meteor", {}, 404, "unknown fault kind 'meteor'"),
    ],
)
def test_bad_fault_parameters_are_named(service: Any, kind: str, params: dict, status: int, message: str) -> None:
    with pytest.raises(ServiceRequestError) as caught:
        inject_fault(service.base_url, kind, TOKEN, params)
    assert caught.value.status == status and message in caught.value.error


def test_probe_delay_slows_one_probe_then_expires(service: Any) -> None:
    reply = inject_fault(service.base_url, "probe-delay", TOKEN, {"probe": "ready", "delay_s": 0.6, "duration_s": 2.0})
    assert reply["fault"] == "probe-delay" and reply["expires_at_s"] == pytest.approx(time.time() + 2.0, abs=1.0)
    ready, slow_s = _timed(lambda: httpx.get(f"{service.base_url}/v2/health/ready", timeout=10))
    assert ready.status_code == 200 and slow_s >= 0.6
    live_s = min(_timed(lambda: httpx.get(f"{service.base_url}/v2/health/live", timeout=10))[1] for _ in range(2))
    assert live_s < 0.6  # only the readiness probe is delayed
    _wait_until(lambda: time.time() > reply["expires_at_s"])
    after_s = min(_timed(lambda: httpx.get(f"{service.base_url}/v2/health/ready", timeout=10))[1] for _ in range(3))
    assert after_s < 0.6 and list_faults(service.base_url, TOKEN) == []


def test_slow_inference_slows_every_forward_pass_then_expires(service: Any) -> None:
    url = f"{service.base_url}/v2/models/tiny-mlp/infer"
    body = example_request("tiny-mlp", 1)
    reply = inject_fault(service.base_url, "slow-inference", TOKEN, {"delay_ms": 500, "duration_s": 1.5})
    response, slow_s = _timed(lambda: httpx.post(url, json=body, timeout=10))
    assert response.status_code == 200 and slow_s >= 0.5
    _wait_until(lambda: time.time() > reply["expires_at_s"])
    fastest = min(_timed(lambda: httpx.post(url, json=body, timeout=10))[1] for _ in range(3))
    assert fastest < 0.5


def test_start_faults_are_active_from_the_start_and_stay(start_service: Any) -> None:
    service = start_service(start_faults=[{"kind": "slow-inference", "params": {"delay_ms": 300}}])
    [fault] = list_faults(service.base_url, TOKEN)
    assert fault["fault"] == "slow-inference" and fault["params"]["delay_ms"] == 300
    assert fault["expires_at_s"] - fault["started_at_s"] >= 3600  # a broken build stays broken
    url = f"{service.base_url}/v2/models/tiny-mlp/infer"
    response, slow_s = _timed(lambda: httpx.post(url, json=example_request("tiny-mlp"), timeout=10))
    assert response.status_code == 200 and slow_s >= 0.3


class _FakeClock:
    """perf_counter stand-in: time moves only when the fake runner says a forward pass took it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _FakeRunner:
    def __init__(self, clock: _FakeClock, forward_s: float) -> None:
        self.clock, self.forward_s = clock, forward_s

    def run_batch(self, arrays: dict) -> dict:
        self.clock.now += self.forward_s
        return {"out": arrays["x"]}


class _RecordingEvent:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return False


def _engine_with_fake_runner(forward_s: float) -> tuple[Any, _RecordingEvent]:
    from harness.config import ServiceConfig
    from harness.service.engine import InferenceEngine
    from harness.service.faults import FaultManager
    from harness.service.metrics import ServiceMetrics

    config = ServiceConfig(model="tiny-mlp")
    engine = InferenceEngine(config, ServiceMetrics(config.model, config.max_batch_size), FaultManager())
    clock, closing = _FakeClock(), _RecordingEvent()
    engine._clock, engine._runner, engine._closing = clock, _FakeRunner(clock, forward_s), closing
    return engine, closing


@pytest.mark.parametrize("forward_s", [0.012, 0.042])
def test_slow_inference_factor_stretches_each_forward_pass_by_its_own_time(forward_s: float) -> None:
    engine, closing = _engine_with_fake_runner(forward_s)
    assert engine._forward({"x": 1}) == {"out": 1} and closing.waits == []  # no fault: no wait
    engine.faults.inject("slow-inference", {"factor": 1.1})
    engine._forward({"x": 2})
    assert closing.waits == [pytest.approx(0.1 * forward_s)]  # forward + wait = 1.1 x forward, whatever its size


def test_slow_inference_delay_and_factor_combine() -> None:
    engine, closing = _engine_with_fake_runner(0.020)
    engine.faults.inject("slow-inference", {"delay_ms": 5, "factor": 1.5})
    engine._forward({"x": 1})
    assert closing.waits == [pytest.approx(0.005), pytest.approx(0.010)]  # the fixed delay, then 0.5 x 20 ms


def test_memory_hog_allocates_real_memory_and_releases_it(service: Any) -> None:
    process = psutil.Process()  # the in-process service shares this process's RSS
    before = process.memory_info().rss
    inject_fault(service.base_url, "memory", TOKEN, {"target_mb": 200, "duration_s": 1.5})
    _wait_until(lambda: process.memory_info().rss - before > 180 * 2**20)
    _wait_until(lambda: process.memory_info().rss - before < 100 * 2**20)
    assert list_faults(service.base_url, TOKEN) == []


def test_memory_leak_grows_at_its_rate_until_cleared(service: Any) -> None:
    process = psutil.Process()
    before = process.memory_info().rss
    inject_fault(service.base_url, "memory", TOKEN, {"rate_mb_s": 100, "duration_s": 30})
    _wait_until(lambda: process.memory_info().rss - before > 60 * 2**20)
    (fault,) = list_faults(service.base_url, TOKEN)
    assert fault["fault"] == "memory" and fault["allocated_mb"] > 0
    held = process.memory_info().rss
    assert clear_faults(service.base_url, TOKEN) == {"cleared": 1}
    # released: the RSS falls by most of what the leak held (measured against the peak, not the start,
    # so other allocations of this test process meanwhile do not matter)
    _wait_until(lambda: held - process.memory_info().rss > 50 * 2**20)


def test_hang_stops_every_answer_then_resumes(service: Any) -> None:
    reply = inject_fault(service.base_url, "hang", TOKEN, {"duration_s": 2.5})
    assert reply["fault"] == "hang"
    time.sleep(0.1)  # the hang begins just after the reply is sent
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{service.base_url}/v2/health/live", timeout=0.5)
    _wait_until(lambda: httpx.get(f"{service.base_url}/v2/health/live", timeout=5).status_code == 200)
    assert time.time() >= reply["expires_at_s"] - 0.2
    assert list_faults(service.base_url, TOKEN) == []
