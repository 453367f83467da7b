"""The inference engine: the model's lifecycle (loading, ready, failed, draining) and its batcher.

The engine owns the one model worker thread. Loading runs there first (torch is imported on that
thread, so the HTTP port answers liveness while the model loads); every forward pass runs there
afterwards. Phase changes are reported through ``on_event`` as dicts the server logs as JSON lines.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from harness.config import ServiceConfig
from harness.service.batcher import DynamicBatcher
from harness.service.faults import FaultManager, stretch_wait_s
from harness.service.metrics import ServiceMetrics
from harness.service.registry import get_signature

__all__ = ["LOADING", "READY", "FAILED", "DRAINING", "InferenceEngine"]

LOADING, READY, FAILED, DRAINING = "loading", "ready", "failed", "draining"


class InferenceEngine:
    """One model behind a dynamic batcher; `start` on the event loop, then `infer`."""

    def __init__(
        self,
        config: ServiceConfig,
        metrics: ServiceMetrics,
        faults: FaultManager,
        on_event: Callable[[dict[str, Any]], None] = lambda event: None,
        started_at: float | None = None,
    ) -> None:
        self.config = config
        self.signature = get_signature(config.model)
        self.metrics = metrics
        self.faults = faults
        self.on_event = on_event
        self.phase = LOADING
        self.error: str | None = None
        self.load_s: float | None = None
        self.device: str | None = None
        self._started_at = time.monotonic() if started_at is None else started_at
        self._executor: ThreadPoolExecutor | None = None
        self._runner: Any = None
        self.batcher: DynamicBatcher | None = None
        self._load_task: asyncio.Task | None = None
        self._closing = threading.Event()  # wakes the worker from simulated delays at shutdown
        self._clock: Callable[[], float] = time.perf_counter  # times forward passes for the slow-inference factor

    @property
    def ready(self) -> bool:
        return self.phase == READY

    def not_ready_reason(self) -> str:
        """Return why the engine is not ready (empty when it is)."""
        if self.phase == LOADING:
            return f"model {self.config.model!r} is loading"
        if self.phase == FAILED:
            return f"model {self.config.model!r} failed to load: {self.error}"
        if self.phase == DRAINING:
            return "service is shutting down"
        return ""

    async def start(self) -> None:
        """Start the worker thread, the batcher, and loading the model in the background."""
        from harness.service.model_runner import ModelRunner  # numpy only; torch is imported inside load()

        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-worker")
        self._runner = ModelRunner(self.config, cancel=self._closing)
        self.batcher = DynamicBatcher(
            self._forward,
            self._executor,
            self.config.max_batch_size,
            self.config.max_queue_delay_ms,
            self.config.max_queue_size,
            on_batch=self.metrics.observe_batch,
        )
        self.batcher.start()
        self._load_task = asyncio.get_running_loop().create_task(self._load(), name="model-load")

    async def wait_loaded(self) -> None:
        """Return once loading has finished, successfully or not."""
        if self._load_task is not None:
            await asyncio.shield(self._load_task)

    async def _load(self) -> None:
        from harness.service.model_runner import LoadCancelled

        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._runner.load)
        except LoadCancelled:
            return
        except Exception as exc:  # any load failure leaves the service unready, with the reason visible
            self.phase = FAILED
            self.error = str(exc) or type(exc).__name__
            self.on_event({"event": "load_failed", "model": self.config.model, "error": self.error, "error_type": type(exc).__name__})
            return
        self.load_s = round(time.monotonic() - self._started_at, 3)
        self.metrics.model_load_s = self.load_s
        self.device = self._runner.device_name
        if self.phase == LOADING:  # a SIGTERM during loading keeps the service draining
            self.phase = READY
        self.on_event(
            {
                "event": "ready",
                "model": self.config.model,
                "precision": self.config.precision,
                "device": self.device,
                "load_s": self.load_s,
                "sha256": (self._runner.manifest or {}).get("sha256"),
            }
        )

    def _forward(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # slow-inference fault: the worker itself is slower, so queues build up
        delay_s = self.faults.inference_delay_s()
        if delay_s:
            self._closing.wait(delay_s)
        factor = self.faults.inference_factor()
        started = self._clock()
        outputs = self._runner.run_batch(arrays)
        if factor > 1.0:  # a proportionally slower build: this pass takes factor x its own measured time
            self._closing.wait(stretch_wait_s(self._clock() - started, factor))
        return outputs

    def begin_drain(self) -> None:
        """Turn not-ready at once and refuse new inference; queued and running requests still finish."""
        if self.phase in (LOADING, READY):
            self.phase = DRAINING

    def abort(self, reason: str) -> int:
        """Fail every queued and running inference request now with ShuttingDown(reason) (answered 503).

        For the end of the shutdown grace period: simulated delays on the worker thread end at once.
        Returns how many requests were failed.
        """
        self.begin_drain()
        self._closing.set()
        return self.batcher.abort(reason) if self.batcher is not None else 0

    def idle(self) -> bool:
        """Return True when no inference request is queued, running or being answered."""
        return self.metrics.in_flight == 0

    async def close(self) -> None:
        """Stop the batcher and the worker thread (a forward pass in progress is not interrupted)."""
        self._closing.set()
        if self.batcher is not None:
            await self.batcher.stop()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
