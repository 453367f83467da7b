"""The synchronous service client: statuses returned or raised as harness errors, never raw tracebacks."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.service.client import ServiceUnreachable, infer, is_live, is_ready, scrape_metrics, wait_ready
from harness.service.registry import example_request


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_infer_returns_the_status_and_body(service: Any) -> None:
    status, body = infer(service.base_url, "tiny-mlp", example_request("tiny-mlp", 2), timeout_s=30)
    assert status == 200 and body["outputs"][0]["shape"] == [2, 4]
    status, body = infer(service.base_url, "nope", example_request("tiny-mlp", 1), timeout_s=30)
    assert status == 404 and "unknown model" in body["error"]
    assert is_live(service.base_url) and is_ready(service.base_url)
    assert scrape_metrics(service.base_url)['harness_requests_total{model="tiny-mlp",code="200"}'] == 1


def test_a_service_that_is_not_there_raises_service_unreachable() -> None:
    url = _closed_port_url()
    with pytest.raises(ServiceUnreachable, match="no answer within 1.0 s"):
        infer(url, "tiny-mlp", example_request("tiny-mlp", 1), timeout_s=1.0)
    assert not is_live(url) and not is_ready(url)


def test_wait_ready_times_out_with_the_last_reason(start_service: Any) -> None:
    service = start_service(wait=False, startup_delay_s=30)
    with pytest.raises(HarnessError, match="not ready within 0.3 s .*loading"):
        wait_ready(service.base_url, timeout_s=0.3)
