"""The raw limit: the model's batched forward throughput in a tight loop, with nothing around it.

Run as its own process (``python -m harness.bench.rawloop``), pinned to the cores and torch thread
count the server gets, so the comparison with the service is like for like. It loads the model
exactly as the service does (`ModelRunner`, verified weights, precision, warm-up) and prints JSON:
samples/s (per wall second and per CPU second), forward-pass percentiles, and what it ran on. With
``--windows`` it stays loaded and measures one window per line read from stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

__all__ = ["RawLoop", "measure_raw", "main"]


class RawLoop:
    """A loaded model and fixed inputs; `window` measures the batched forward loop for a while."""

    def __init__(
        self,
        model: str,
        precision: str,
        batch: int,
        torch_threads: int,
        weights_dir: str | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        from harness.config import resolve_service_config
        from harness.service.model_runner import ModelRunner
        from harness.service.registry import example_inputs

        flags = {"model": model, "precision": precision, "max_batch_size": batch, "torch_threads": torch_threads,
                 "seed": seed, "weights_dir": weights_dir, "device": device, "warmup_iters": 4}
        self.model, self.precision, self.batch, self.torch_threads = model, precision, batch, torch_threads
        self.runner = ModelRunner(resolve_service_config(flags))
        started = time.monotonic()
        self.runner.load()
        self.load_s = time.monotonic() - started
        self.inputs = example_inputs(model, batch, seed=1)

    def window(self, duration_s: float) -> dict[str, Any]:
        """Return samples/s and forward-pass percentiles over about ``duration_s`` seconds."""
        import numpy as np

        durations = []
        cpu_started = time.process_time()
        started = time.perf_counter()
        while True:
            begin = time.perf_counter()
            self.runner.run_batch(self.inputs)
            end = time.perf_counter()
            durations.append(end - begin)
            if end - started >= duration_s and len(durations) >= 3:
                break
        elapsed = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
        ms = np.asarray(durations) * 1000
        return {
            "model": self.model,
            "precision": self.precision,
            "batch": self.batch,
            "torch_threads": self.torch_threads,
            "iterations": len(durations),
            "elapsed_s": round(elapsed, 3),
            "samples_per_s": round(self.batch * len(durations) / elapsed, 2),
            "samples_per_cpu_s": round(self.batch * len(durations) / cpu_s, 2) if cpu_s > 0 else None,
            "cpu_percent": round(100.0 * cpu_s / elapsed, 1),
            "forward_p50_ms": round(float(np.percentile(ms, 50)), 3),
            "forward_p99_ms": round(float(np.percentile(ms, 99)), 3),
            "load_s": round(self.load_s, 3),
            "device": self.runner.device_name,
            "cores": sorted(os.sched_getaffinity(0)),
        }


def measure_raw(
    model: str,
    precision: str,
    batch: int,
    duration_s: float,
    torch_threads: int,
    weights_dir: str | None = None,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Return the raw batched throughput of ``model`` at ``batch`` over about ``duration_s`` seconds."""
    return RawLoop(model, precision, batch, torch_threads, weights_dir, seed, device).window(duration_s)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, measure, print the JSON result; return 0."""
    parser = argparse.ArgumentParser(prog="python -m harness.bench.rawloop", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--windows", action="store_true", help="load once, then measure one window per stdin line (its duration in s)"
    )
    args = parser.parse_args(argv)
    loop = RawLoop(args.model, args.precision, args.batch, args.torch_threads, args.weights_dir, args.seed, args.device)
    if not args.windows:
        sys.stdout.write(json.dumps(loop.window(args.duration_s)) + "\n")
        return 0
    sys.stdout.write(json.dumps({"event": "ready", "load_s": round(loop.load_s, 3)}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:  # the benchmark interleaves these windows with the service's
        if line.strip():
            sys.stdout.write(json.dumps(loop.window(float(line))) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
