"""The service as a real process: JSON events, SIGTERM drain, crash fault, refusing bad weights, CLI."""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from harness.service import weights
from harness.service.client import clear_faults, inject_fault, wait_ready
from harness.service.registry import example_request

from .conftest import TOKEN

pytestmark = pytest.mark.slow


class Child:
    """`python -m harness.service ...` with its stdout events collected; killed at the end whatever happens."""

    def __init__(self, args: list[str], weights_dir: Path, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "harness.service", "--port", "0", "--model", "tiny-mlp", "--weights-dir", str(weights_dir),
                   "--torch-threads", "1", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.wait_event('listening')['port']}"

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def wait_event(self, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event["event"] == name:
                return event
        raise AssertionError(f"no {name!r} event within {timeout_s} s; stderr: {self.process.stderr.read() if self.process.poll() is not None else ''}")

    def exit_code(self, timeout_s: float = 30.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def child(weights_dir: Path) -> Iterator[Any]:
    started: list[Child] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Child:
        process = Child(list(args), weights_dir, env)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()


def test_ready_event_names_port_model_and_load_time(child: Any) -> None:
    service = child()
    ready = service.wait_event("ready")
    assert ready["model"] == "tiny-mlp" and ready["port"] == int(service.base_url.rsplit(":", 1)[1]) and ready["load_s"] > 0
    service.process.send_signal(signal.SIGTERM)
    assert service.exit_code() == 0


def test_sigterm_drains_in_flight_requests_with_none_failed(child: Any) -> None:
    service = child("--max-queue-delay-ms", "0", "--grace-period-s", "20", env={"HARNESS_FAULT_TOKEN": TOKEN})
    wait_ready(service.base_url, timeout_s=60)
    inject_fault(service.base_url, "slow-inference", TOKEN, {"delay_ms": 700, "duration_s": 60})
    body = example_request("tiny-mlp", 1)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(httpx.post, f"{service.base_url}/v2/models/tiny-mlp/infer", json=body, timeout=60) for _ in range(6)]
        deadline = time.monotonic() + 20
        while 'harness_in_flight_requests{model="tiny-mlp"} 6' not in httpx.get(f"{service.base_url}/metrics").text:
            assert time.monotonic() < deadline, "requests never got in flight"
            time.sleep(0.02)
        service.process.send_signal(signal.SIGTERM)
        service.wait_event("draining", timeout_s=10)
        ready = httpx.get(f"{service.base_url}/v2/health/ready", timeout=10)
        assert ready.status_code == 503 and "shutting down" in ready.json()["error"]
        refused = httpx.post(f"{service.base_url}/v2/models/tiny-mlp/infer", json=body, timeout=10)
        assert refused.status_code == 503
        statuses = [future.result().status_code for future in futures]
    assert statuses == [200] * 6
    assert service.exit_code(timeout_s=30) == 0


def test_sigterm_during_a_slow_load_exits_promptly(child: Any) -> None:
    service = child("--startup-delay-s", "120")
    assert httpx.get(f"{service.base_url}/v2/health/ready", timeout=10).status_code == 503
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    assert service.exit_code(timeout_s=30) == 0
    assert time.monotonic() - started < 10


def test_crash_fault_exits_with_the_requested_code(child: Any) -> None:
    service = child("--fault-token", TOKEN)
    wait_ready(service.base_url, timeout_s=60)
    reply = inject_fault(service.base_url, "crash", TOKEN, {"exit_code": 42, "delay_s": 0.2})
    assert reply["fault"] == "crash"
    assert service.exit_code() == 42


def test_tampered_weights_never_become_ready_and_exit_nonzero(child: Any, tmp_path: Path) -> None:
    folder = weights.ensure_weights("tiny-mlp", 0, tmp_path)
    path = folder / weights.WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    service = Child(["--startup-delay-s", "2"], tmp_path)  # the readiness question must arrive before the load fails
    try:
        ready = httpx.get(f"{service.base_url}/v2/health/ready", timeout=10)
        assert ready.status_code == 503
        failed = service.wait_event("load_failed")
        assert "SHA-256" in failed["error"] and failed["error_type"] == "ModelIntegrityError"
        assert service.exit_code() == 3
        assert "SHA-256" in service.process.stderr.read()
    finally:
        service.kill()


def test_harness_serve_cli_refuses_a_bad_flag_value_naming_it(weights_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness", "serve", "--max-batch-size", "0", "--weights-dir", str(weights_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "max_batch_size=0" in done.stderr


def test_a_scheduled_crash_can_be_called_back(child: Any) -> None:
    service = child("--fault-token", TOKEN)
    wait_ready(service.base_url, timeout_s=60)
    inject_fault(service.base_url, "crash", TOKEN, {"exit_code": 7, "delay_s": 1.5})
    assert clear_faults(service.base_url, TOKEN) == {"cleared": 1}
    time.sleep(2.0)  # past the crash's time: the process must still be serving
    assert service.process.poll() is None
    assert httpx.get(f"{service.base_url}/v2/health/live", timeout=10).status_code == 200


def test_a_port_in_use_is_a_clear_error(weights_dir: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "harness.service", "--port", str(port), "--model", "tiny-mlp", "--weights-dir", str(weights_dir)],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


@pytest.mark.parametrize("grace_s, fault", [(1.5, {"delay_ms": 20000}), (2.0, {"factor": 100.0, "delay_ms": 3000})])
def test_a_drain_that_outlasts_the_grace_period_exits_within_it_and_answers_503(child: Any, grace_s: float, fault: dict) -> None:
    """The platform SIGKILLs at the end of the grace period: the service must be gone by then, not a rounded-up
    second later, and the requests it cut off get a JSON 503, not a reset connection or a plain-text 500."""
    service = child("--grace-period-s", str(grace_s), "--max-queue-delay-ms", "0", "--max-batch-size", "1",
                    env={"HARNESS_FAULT_TOKEN": TOKEN})
    wait_ready(service.base_url, timeout_s=60)
    inject_fault(service.base_url, "slow-inference", TOKEN, {**fault, "duration_s": 60})
    body = example_request("tiny-mlp", 1)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # one forward pass running, two queued behind it
        stuck = [pool.submit(httpx.post, f"{service.base_url}/v2/models/tiny-mlp/infer", json=body, timeout=60) for _ in range(3)]
        deadline = time.monotonic() + 20
        while 'harness_in_flight_requests{model="tiny-mlp"} 3' not in httpx.get(f"{service.base_url}/metrics").text:
            assert time.monotonic() < deadline, "the requests never got in flight"
            time.sleep(0.02)
        started = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        code = service.exit_code(timeout_s=30)
        elapsed_s = time.monotonic() - started
        answers = [future.result() for future in stuck]
    assert code == 0
    assert grace_s - 0.4 <= elapsed_s < grace_s, f"exited {elapsed_s:.3f} s after SIGTERM; grace period {grace_s} s"
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["content-type"] == "application/json"
        assert f"cut off at the end of the {grace_s:g} s grace period" in answer.json()["error"]
    timeout = service.wait_event("drain_timeout", timeout_s=5)
    assert timeout["in_flight"] == 3 and timeout["cut_off"] == 3


def test_the_bound_socket_already_listens_so_a_connection_before_the_server_loop_is_not_refused() -> None:
    import socket

    from harness.service.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        # nothing accepts yet (the server loop starts after the "listening" event): the handshake completes in the backlog
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        sock.close()
