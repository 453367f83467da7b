"""Accuracy drift with precision: fp16/bf16 outputs against fp32 on the same seeded inputs.

A faster precision that changes the answers must be visible next to its speed-up. The outputs are
computed by the service's own `ModelRunner` (same weights, same casts, outputs returned as fp32), in
a child process so that torch never loads into the harness's process and a precision that is far
too slow here (fp16 matmul on a CPU without fp16 hardware is 100x+ slower) can be killed at the
time budget instead of hanging the sweep. Fast precisions run first so a slow one cannot starve them.

Measures (reference = fp32, d = candidate - reference):
``max_abs_error`` = max|d|, ``mean_abs_error`` = mean|d|; relative to the output's scale (not
element-wise, which explodes near zero): ``max_rel_error`` = max|d| / max|ref|,
``mean_rel_error`` = mean|d| / mean|ref|; ``top1_agreement`` = share of samples whose arg-max output
is the same. ``speedup_vs_fp32`` = fp32 forward time / this precision's, same batch, one thread.

The same child also times the forward pass at each batch size the sweep deploys
(``forward_ms_by_batch``: per precision and batch size, the fastest round's median of a tight loop of
`ModelRunner.run_batch`, the service's own call), in rounds that visit every precision and size in
turn, so the machine's drift hits all of them alike; the fastest round is the least disturbed one (a
neighbour on a shared core only ever slows a loop down). These are the raw speed-ups the sweep's effects are set
against: batching's per-sample gain (batch 1 vs the largest) and each precision's gain over fp32.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Sequence

import numpy as np

from harness import processes
from harness.config import PRECISIONS, default_weights_dir
from harness.errors import ConfigError
from harness.paths import resolve_path
from harness.signals import interrupts_held

__all__ = ["REFERENCE_PRECISION", "AccuracyDrift", "compare_outputs", "measure_accuracy", "measure_plan_accuracy",
           "forward_budget_s"]

REFERENCE_PRECISION = "fp32"
_SPEED_ORDER = {"fp32": 0, "bf16": 1, "fp16": 2}  # run order: the reference, then fast before slow


@dataclass(frozen=True)
class AccuracyDrift:
    """One precision's outputs against fp32's, and its forward-time speed-up; NaN where not measured."""

    precision: str
    status: str  # ok | timeout | skipped | error
    reason: str = ""
    samples: int = 0
    max_abs_error: float = math.nan
    mean_abs_error: float = math.nan
    max_rel_error: float = math.nan
    mean_rel_error: float = math.nan
    top1_agreement: float = math.nan
    forward_ms: float = math.nan  # one forward of ``samples`` at this precision (median of repeats)
    speedup_vs_fp32: float = math.nan
    forward_ms_by_batch: dict[str, float] = field(default_factory=dict)  # batch size -> one forward (ms)
    forward_reason: str = ""  # why a batch size was not timed

    def to_dict(self) -> dict:
        return asdict(self)


def compare_outputs(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Return the error measures of ``candidate`` against ``reference`` (see module docs).

    Raises ValueError when the shapes differ or there is nothing to compare.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"output shapes differ: reference {ref.shape}, candidate {cand.shape}")
    if ref.size == 0:
        raise ValueError("no outputs to compare")
    diff = np.abs(cand - ref)
    scale_max = float(np.abs(ref).max())
    scale_mean = float(np.abs(ref).mean())
    rows_ref = ref.reshape(ref.shape[0], -1)
    rows_cand = cand.reshape(cand.shape[0], -1)
    return {
        "max_abs_error": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
        "max_rel_error": float(diff.max()) / scale_max if scale_max > 0 else math.nan,
        "mean_rel_error": float(diff.mean()) / scale_mean if scale_mean > 0 else math.nan,
        "top1_agreement": float(np.mean(rows_ref.argmax(axis=1) == rows_cand.argmax(axis=1))),
    }


def _validate(model: str, precisions: Sequence[str], samples: int, time_budget_s: float) -> list[str]:
    from harness.modelnames import MODEL_NAMES

    if model not in MODEL_NAMES:
        raise ConfigError("model", model, f"unknown model; choose one of {', '.join(MODEL_NAMES)}")
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ConfigError("precisions", precision, f"choose from {', '.join(PRECISIONS)}")
    if not isinstance(samples, int) or not 1 <= samples <= 1024:
        raise ConfigError("samples", samples, "must be an integer in [1, 1024]")
    if not time_budget_s > 0:
        raise ConfigError("time_budget_s", time_budget_s, "must be greater than zero")
    wanted = sorted(set(precisions) | {REFERENCE_PRECISION}, key=lambda p: _SPEED_ORDER.get(p, 9))
    return wanted


def measure_accuracy(
    model: str,
    precisions: Iterable[str],
    *,
    samples: int = 8,
    seed: int = 0,
    time_budget_s: float = 60.0,
    weights_dir: str | None = None,
    cpus: Sequence[int] | None = None,
    forward_batches: Sequence[int] = (),
    forward_window_s: float = 0.3,
    forward_rounds: int = 3,
) -> list[AccuracyDrift]:
    """Return one `AccuracyDrift` per precision (fp32 included, as the reference), within the budget.

    Precisions not done when the budget runs out are recorded as ``timeout`` with the reason; a
    precision whose estimated forward time cannot fit is ``skipped``. With ``forward_batches`` each
    drift also holds the forward time at those batch sizes (``forward_rounds`` interleaved rounds
    of ``forward_window_s`` loops, in time of their own on top of ``time_budget_s``: `forward_budget_s`).
    Raises ConfigError for bad arguments; a failing child is reported per precision as ``error``, never raised.
    """
    order = _validate(model, list(precisions), samples, time_budget_s)
    batches = sorted({int(b) for b in forward_batches})
    forward_s = forward_budget_s(len(order), len(batches), forward_window_s, forward_rounds)
    job = {"model": model, "precisions": order, "samples": samples, "seed": seed, "budget_s": time_budget_s,
           "weights_dir": str(resolve_path(weights_dir or default_weights_dir(), "weights_dir")),
           "forward_batches": batches, "forward_window_s": float(forward_window_s),
           "forward_rounds": int(forward_rounds), "forward_budget_s": forward_s}
    proc = None
    timed_out = False
    try:
        # the one spawner: pinned, own session, SIGKILLed with the harness (so: from the main thread);
        # an interrupt lands only once the child is recorded here, for the finally below to stop it
        with interrupts_held():
            proc = processes.spawn(processes.python_argv("harness.sweep.accuracy", json.dumps(job)),
                                   cpus=cpus, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=time_budget_s + forward_s + 15.0)  # + torch import and model load
    except subprocess.TimeoutExpired:
        timed_out = True
        processes.stop(proc, grace_s=0, first_signal=signal.SIGKILL)
        out, err = proc.communicate()
    finally:
        if proc is not None and proc.poll() is None:
            processes.stop(proc, grace_s=0, first_signal=signal.SIGKILL)
    out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    results = {}
    forward: dict[str, Any] = {}
    for line in out.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("precision") in order:
            results[entry["precision"]] = entry
        elif isinstance(entry, dict) and isinstance(entry.get("forward"), dict):
            forward = entry
    missing_reason = (
        f"not finished within the accuracy budget of {time_budget_s:g} s" if timed_out
        else f"child exited {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else 'no output'}"
    )
    drifts = _drifts(order, results, "timeout" if timed_out else "error", missing_reason)
    if job["forward_batches"]:
        drifts = [_with_forward(d, forward, missing_reason) for d in drifts]
    return drifts


def forward_budget_s(precisions: int, batches: int, window_s: float, rounds: int) -> float:
    """Return the time the forward-pass timing is given on top of the accuracy budget: its loops, with room
    for each size's first call and a slow machine (0 when nothing is to be timed)."""
    if not batches:
        return 0.0
    return precisions * batches * (rounds * window_s * 1.5 + 0.5) + 2.0


def measure_plan_accuracy(plan: Any, cpus: Sequence[int] | None = None) -> list[AccuracyDrift]:
    """Return `measure_accuracy` for a `SweepPlan`: its precisions and samples, the forward pass timed at
    its batch sizes, within its accuracy budget, on ``cpus`` (the service's)."""
    return measure_accuracy(plan.model, plan.precisions, samples=plan.accuracy_samples, seed=plan.seed,
                            time_budget_s=plan.accuracy_budget_s, cpus=cpus, forward_batches=plan.batch_sizes,
                            forward_window_s=plan.forward_window_s, forward_rounds=plan.forward_rounds)


def _with_forward(drift: AccuracyDrift, forward: dict[str, Any], missing_reason: str) -> AccuracyDrift:
    timed = (forward.get("forward") or {}).get(drift.precision) or {}
    why = (forward.get("reasons") or {}).get(drift.precision, "" if forward else f"forward pass not timed: {missing_reason}")
    return replace(drift, forward_ms_by_batch={str(k): float(v) for k, v in timed.items()}, forward_reason=why)


def _drifts(order: list[str], results: dict[str, dict], missing_status: str, missing_reason: str) -> list[AccuracyDrift]:
    reference = results.get(REFERENCE_PRECISION)
    ref_out = np.asarray(reference["outputs"]) if reference and reference.get("status") == "ok" else None
    drifts = []
    for precision in order:
        entry = results.get(precision)
        if entry is None:
            drifts.append(AccuracyDrift(precision, missing_status, missing_reason))
            continue
        if entry.get("status") != "ok":
            drifts.append(AccuracyDrift(precision, entry.get("status", "error"), entry.get("reason", "")))
            continue
        outputs = np.asarray(entry["outputs"])
        measures: dict[str, float] = {}
        reason = ""
        speedup = math.nan
        if ref_out is None:
            reason = "no fp32 reference outputs to compare with"
        else:
            k = outputs.shape[0]  # a slow precision may have run fewer samples: compare the same ones
            measures = compare_outputs(ref_out[:k], outputs)
            ref_ms = reference.get("forward_ms_by_samples", {}).get(str(k))
            if ref_ms and entry["forward_ms"] > 0:
                speedup = ref_ms / entry["forward_ms"]
        drifts.append(AccuracyDrift(precision, "ok", reason or entry.get("reason", ""), int(outputs.shape[0]),
                                    forward_ms=float(entry["forward_ms"]), speedup_vs_fp32=speedup, **measures))
    return drifts


def _time_forward(runner, arrays: dict, repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        runner.run_batch(arrays)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def _child_main(job: dict) -> int:
    """Run in the child process: print one JSON line per precision as it completes."""
    from harness.config import ServiceConfig
    from harness.service.model_runner import ModelRunner
    from harness.service.registry import example_inputs

    deadline = time.monotonic() + float(job["budget_s"])
    samples = int(job["samples"])
    inputs = example_inputs(job["model"], samples, seed=int(job["seed"]))
    runners: dict[str, tuple[Any, float]] = {}  # precision -> (loaded runner, one-sample forward ms)
    for precision in job["precisions"]:
        config = ServiceConfig(model=job["model"], precision=precision, device="cpu", warmup_iters=0,
                               torch_threads=1, seed=0, weights_dir=job["weights_dir"], max_batch_size=samples)
        runner = ModelRunner(config)
        runner.load()
        one = {name: array[:1] for name, array in inputs.items()}
        single_ms = _time_forward(runner, one, 1)  # also pays the first-call cost
        remaining_ms = (deadline - time.monotonic()) * 1000.0
        k = samples
        reason = ""
        if single_ms * samples * 2 > remaining_ms:  # linear in samples: the worst case (no batching gain)
            fit = int(remaining_ms / (2 * single_ms))
            k = 2 ** int(math.log2(fit)) if fit >= 1 else 0  # a size the fp32 reference was timed at
            if k < 1:
                print(json.dumps({"precision": precision, "status": "skipped",
                                  "reason": f"one sample takes {single_ms:.0f} ms; {remaining_ms / 1000:.1f} s of budget left"}), flush=True)
                continue
            reason = f"{k} of {samples} samples: one sample takes {single_ms:.0f} ms at {precision}"
        batch = {name: array[:k] for name, array in inputs.items()}
        outputs = runner.run_batch(batch)
        output = next(iter(outputs.values()))
        repeats = 3 if single_ms * k * 4 < (deadline - time.monotonic()) * 1000.0 else 1
        forward_ms = _time_forward(runner, batch, repeats)
        entry = {"precision": precision, "status": "ok", "reason": reason, "outputs": output.tolist(),
                 "forward_ms": forward_ms}
        if precision == REFERENCE_PRECISION:
            # reference times at every size a slower precision might fall back to (cheap at fp32)
            entry["forward_ms_by_samples"] = {str(samples): forward_ms}
            for size in (1, 2, 4, 8, 16, 32):
                if size < samples:
                    part = {name: array[:size] for name, array in inputs.items()}
                    entry["forward_ms_by_samples"][str(size)] = _time_forward(runner, part, 3)
        print(json.dumps(entry), flush=True)
        if job.get("forward_batches"):  # kept loaded for the interleaved timing rounds below
            runners[precision] = (runner, single_ms)
        del runner
    if job.get("forward_batches"):
        forward_deadline = deadline + float(job.get("forward_budget_s") or 0.0)
        print(json.dumps(_time_batches(job, runners, forward_deadline)), flush=True)
    return 0


def _time_batches(job: dict, runners: dict[str, tuple[Any, float]], deadline: float) -> dict[str, Any]:
    """Return {"forward": {precision: {batch: ms}}, "reasons": {precision: why not}}: tight loops of ``run_batch``
    per precision and batch size, in rounds that visit each in turn, within ``deadline``; each figure is the
    fastest round's median (the least disturbed round)."""
    from harness.service.registry import example_inputs

    batches = [int(b) for b in job["forward_batches"]]
    window_s, rounds = float(job["forward_window_s"]), int(job["forward_rounds"])
    inputs = {b: example_inputs(job["model"], b, seed=int(job["seed"]) + b) for b in batches}
    reasons: dict[str, str] = {}
    timed: dict[str, Any] = {}
    for precision, (runner, _) in runners.items():
        for batch in batches:  # each size's first calls (kernel selection, caches) are not the ones timed
            runner.run_batch(inputs[batch])
        begin = time.perf_counter()
        runner.run_batch(inputs[max(batches)])
        largest_ms = (time.perf_counter() - begin) * 1000.0
        if largest_ms > window_s * 1000.0:  # not even one forward per loop: too slow to time here
            reasons[precision] = f"one forward at batch {max(batches)} takes {largest_ms:.0f} ms: too slow to time"
            continue
        timed[precision] = runner
    per_round_s = len(timed) * len(batches) * window_s * 1.2
    fit = int((deadline - time.monotonic()) / per_round_s) if per_round_s else 0
    rounds = min(rounds, fit)
    if rounds < 1:
        left = "no time left to time the forward pass" if timed else ""
        return {"forward": {}, "reasons": {p: reasons.get(p, left) for p in runners}}
    medians: dict[str, dict[int, list[float]]] = {p: {b: [] for b in batches} for p in timed}  # one per round
    for _ in range(rounds):
        for precision, runner in timed.items():
            for batch in batches:
                medians[precision][batch].append(float(np.median(_loop_ms(runner, inputs[batch], window_s))))
    forward = {p: {str(b): min(v) for b, v in by_batch.items()} for p, by_batch in medians.items()}
    return {"forward": forward, "reasons": reasons, "rounds": rounds, "window_s": window_s}


def _loop_ms(runner, arrays: dict, window_s: float) -> list[float]:
    """Return the times (ms) of back-to-back forwards for about ``window_s`` (three at least)."""
    times = []
    started = time.perf_counter()
    while True:
        begin = time.perf_counter()
        runner.run_batch(arrays)
        end = time.perf_counter()
        times.append((end - begin) * 1000.0)
        if end - started >= window_s and len(times) >= 3:
            return times


if __name__ == "__main__":
    sys.exit(_child_main(json.loads(sys.argv[1])))
