"""The dynamic batcher without a model: batch formation, sample limits, the bounded queue, failures."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from harness.service.batcher import DynamicBatcher, QueueFull, ShuttingDown


class Recorder:
    """A stand-in forward pass: records batch sizes, doubles the input, optionally waits on a gate."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.gate = gate
        self.fail = fail

    def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.gate is not None:
            self.gate.wait(10)
        self.sizes.append(len(arrays["x"]))
        if self.fail:
            raise RuntimeError("boom")
        return {"y": arrays["x"] * 2}


def _request(value: float, count: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((count, 2), value, dtype=np.float32)}


async def _run(recorder: Recorder, requests: list[tuple[float, int]], **options: float) -> list[object]:
    executor = ThreadPoolExecutor(1)
    batcher = DynamicBatcher(recorder, executor, int(options.get("max_batch_size", 4)), options.get("delay_ms", 20.0), int(options.get("queue", 100)))
    batcher.start()
    try:
        futures = [batcher.submit(_request(value, count), count) for value, count in requests]
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 10)
    finally:
        await batcher.stop()
        executor.shutdown()


def test_requests_are_batched_up_to_the_limit_and_answered_in_order() -> None:
    recorder = Recorder()
    results = asyncio.run(_run(recorder, [(float(i), 1) for i in range(10)], max_batch_size=4))
    assert recorder.sizes == [4, 4, 2]
    assert [float(r["y"][0, 0]) for r in results] == [2.0 * i for i in range(10)]


def test_a_multi_sample_request_is_never_split() -> None:
    recorder = Recorder()
    results = asyncio.run(_run(recorder, [(1.0, 3), (2.0, 3), (3.0, 1)], max_batch_size=4))
    assert recorder.sizes == [3, 4]
    assert [r["y"].shape for r in results] == [(3, 2), (3, 2), (1, 2)]


def test_a_lone_request_waits_at_most_the_queue_delay() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await _run(Recorder(), [(1.0, 1)], max_batch_size=32, delay_ms=100.0)
        return loop.time() - started

    assert 0.09 <= asyncio.run(scenario()) < 5.0


def test_the_queue_is_bounded() -> None:
    async def scenario() -> None:
        gate = threading.Event()
        executor = ThreadPoolExecutor(1)
        batcher = DynamicBatcher(Recorder(gate), executor, 1, 0.0, 2)
        batcher.start()
        try:
            first = batcher.submit(_request(0.0), 1)
            while batcher.depth:  # the first request is taken into the (blocked) forward pass
                await asyncio.sleep(0.01)
            waiting = [batcher.submit(_request(1.0), 1), batcher.submit(_request(2.0), 1)]
            assert batcher.depth == 2
            with pytest.raises(QueueFull, match="2 requests waiting"):
                batcher.submit(_request(3.0), 1)
            gate.set()
            await asyncio.wait_for(asyncio.gather(first, *waiting), 10)
        finally:
            gate.set()
            await batcher.stop()
            executor.shutdown()
        with pytest.raises(ShuttingDown):
            batcher.submit(_request(4.0), 1)

    asyncio.run(scenario())


def test_a_failed_forward_pass_fails_its_batch_only() -> None:
    results = asyncio.run(_run(Recorder(fail=True), [(1.0, 1), (2.0, 1)], max_batch_size=4))
    assert all(isinstance(r, RuntimeError) for r in results)
