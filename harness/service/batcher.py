"""Dynamic batching: requests gathered on the event loop, forward passes on one model worker thread.

The asyncio side queues each request (bounded: a full queue refuses at once rather than growing) and
a collector task forms batches of up to ``max_batch_size`` samples, waiting at most
``max_queue_delay_ms`` after the oldest queued request for more to arrive. Each batch runs on the
single worker thread; while it runs, new requests queue up, so under load the next batch is full
the moment the worker is free. A request carrying several samples is never split across batches.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["QueueFull", "ShuttingDown", "DynamicBatcher"]

RunBatch = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class QueueFull(Exception):
    """The request queue is at ``max_queue_size``: the caller should answer 503 with Retry-After."""


class ShuttingDown(Exception):
    """The batcher is stopped and takes no new requests."""


class _Pending:
    __slots__ = ("arrays", "count", "future", "enqueued_at")

    def __init__(self, arrays: dict[str, np.ndarray], count: int, future: asyncio.Future) -> None:
        self.arrays = arrays
        self.count = count
        self.future = future
        self.enqueued_at = time.monotonic()


class DynamicBatcher:
    """Queue requests, run them in batches on ``executor`` (one thread), deliver each its outputs."""

    def __init__(
        self,
        run_batch: RunBatch,
        executor: ThreadPoolExecutor,
        max_batch_size: int,
        max_queue_delay_ms: float,
        max_queue_size: int,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self.max_queue_size = max_queue_size
        self._on_batch = on_batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_samples = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self._running: list[_Pending] = []  # the batch on the worker thread now
        self.busy = False

    @property
    def depth(self) -> int:
        """Return the number of requests waiting (not counting the batch being run)."""
        return len(self._queue)

    def start(self) -> None:
        """Start the collector task on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="batcher")

    async def stop(self) -> None:
        """Stop taking requests, fail the queued ones, and stop the collector."""
        self._closed = True
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(ShuttingDown("service is shutting down"))
        self._queued_samples = 0
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def abort(self, reason: str) -> int:
        """Stop taking requests and fail every queued and running request with ShuttingDown(reason) now.

        A forward pass already on the worker thread runs on, but nobody waits for it. Returns how many
        requests were failed.
        """
        self._closed = True
        failed = 0
        for pending in [*self._running, *self._queue]:
            if not pending.future.done():
                pending.future.set_exception(ShuttingDown(reason))
                failed += 1
        self._queue.clear()
        self._queued_samples = 0
        return failed

    def submit(self, arrays: dict[str, np.ndarray], count: int) -> asyncio.Future:
        """Queue one request of ``count`` samples; return a future of its outputs.

        Raises QueueFull when ``max_queue_size`` requests already wait, ShuttingDown after `stop`.
        """
        if self._closed:
            raise ShuttingDown("service is shutting down")
        if len(self._queue) >= self.max_queue_size:
            raise QueueFull(f"queue full ({self.max_queue_size} requests waiting)")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(arrays, count, future))
        self._queued_samples += count
        self._wakeup.set()
        return future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._queue[0].enqueued_at + self.max_queue_delay_s
            while self._queued_samples < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            self.busy = True
            self._running = batch
            started = time.monotonic()
            try:
                results = await loop.run_in_executor(self._executor, self._run, batch)
            except Exception as exc:  # a failed forward fails its batch, never the service
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            else:
                for pending, outputs in zip(batch, results):
                    if not pending.future.done():  # the client may have gone away
                        pending.future.set_result(outputs)
            finally:
                self.busy = False
                self._running = []
            if self._on_batch is not None:
                self._on_batch(sum(p.count for p in batch), time.monotonic() - started)

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        samples = 0
        while self._queue:
            pending = self._queue[0]
            if pending.future.done():  # cancelled while waiting
                self._queue.popleft()
                self._queued_samples -= pending.count
                continue
            if batch and samples + pending.count > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued_samples -= pending.count
            batch.append(pending)
            samples += pending.count
        return batch

    def _run(self, batch: list[_Pending]) -> list[dict[str, np.ndarray]]:
        # on the worker thread: one concatenation per input (always a fresh, writable array), one forward
        names = batch[0].arrays.keys()
        inputs = {name: np.concatenate([p.arrays[name] for p in batch]) for name in names}
        outputs = self._run_batch(inputs)
        results: list[dict[str, Any]] = []
        start = 0
        for pending in batch:
            end = start + pending.count
            results.append({name: array[start:end] for name, array in outputs.items()})
            start = end
        return results
