"""Fixtures for the service tests: one weights cache per session, small configs, in-process servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.config import ServiceConfig, resolve_service_config

TOKEN = "test-token"


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights cache shared by the session: each model's weights are generated once."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture
def make_config(weights_dir: Path) -> Callable[..., ServiceConfig]:
    """Return a factory of ServiceConfig for the tiny model on a free port, with overrides."""

    def make(**overrides: Any) -> ServiceConfig:
        flags = {"model": "tiny-mlp", "port": 0, "weights_dir": str(weights_dir), "torch_threads": 1,
                 "max_queue_delay_ms": 5.0, "fault_token": TOKEN, "grace_period_s": 5.0, **overrides}
        return resolve_service_config(flags, env={})

    return make


@pytest.fixture
def start_service(make_config: Callable[..., ServiceConfig]) -> Iterator[Callable[..., Any]]:
    """Return a function starting an in-process service (ready unless wait=False); all are stopped after the test."""
    from harness.service.client import wait_ready
    from harness.service.server import ServiceThread

    started: list[ServiceThread] = []

    def start(wait: bool = True, **overrides: Any) -> ServiceThread:
        service = ServiceThread(make_config(**overrides))
        service.__enter__()
        started.append(service)
        if wait:
            wait_ready(service.base_url, timeout_s=60)
        return service

    try:
        yield start
    finally:
        for service in started:
            service.stop()


@pytest.fixture
def service(start_service: Callable[..., Any]) -> Any:
    """A ready in-process service of the tiny model, with fault token TOKEN."""
    return start_service()
