"""Fixtures for the generative service's tests: one weights cache per session, the app driven in-process."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TOKEN = "test-token"
_INPROCESS = Path(__file__).resolve().parents[1] / "service" / "inprocess.py"


def _inprocess_module() -> Any:
    spec = importlib.util.spec_from_file_location("llm_inprocess", _INPROCESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llm-weights")


@pytest.fixture(scope="session")
def decoder(weights_dir: Path) -> Any:
    """The reference decoder with verified weights (seed 0), one torch thread."""
    import torch

    from harness.llmservice.model import load_decoder

    torch.set_num_threads(1)
    return load_decoder(0, weights_dir)[0]


@pytest.fixture
def start_app(weights_dir: Path) -> Iterator[Callable[..., Any]]:
    """Return a function starting the app in-process (ready) with EngineSettings overrides; all stop after the test."""
    from harness.llmservice.api import LLMApp
    from harness.llmservice.engine import EngineSettings

    started = []

    def start(**settings: Any) -> Any:
        app = LLMApp(EngineSettings(**settings), seed=0, weights_dir=str(weights_dir), fault_token=TOKEN)
        driver = _inprocess_module().InProcessApp(app)
        driver.__enter__()
        started.append(driver)
        deadline = time.monotonic() + 30
        while driver.request("GET", "/ready").status != 200:
            assert time.monotonic() < deadline, f"not ready: {app.load_error}"
            time.sleep(0.02)
        return driver

    yield start
    for driver in started:
        driver.__exit__(None, None, None)
