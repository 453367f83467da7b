"""Baseline vs current: per metric, the change and whether it is beyond noise.

Metrics come from saved runs only, as repeated windows (the unit `harness.measure.stats` compares):

- load runs: the requests are cut into consecutive windows of ``window_s`` (the first is dropped as
  warm-up); each window gives one throughput, p50 and p99 sample;
- sweeps: the repeats of each (precision, batch size, load level) point in ``sweep.csv``;
- chaos runs: time to recover and availability are single numbers per run, so they are judged by
  explicit thresholds (`Thresholds.ttr_increase_s`, `Thresholds.availability_drop`) instead.

Parts are matched by their path inside the run directory (``load``, ``sweep``, ``chaos/pod-kill-single``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.environment import fingerprint_differences
from harness.measure.stats import INCONCLUSIVE, REGRESSED, compare
from harness.report import frames
from harness.report.sections import MAX_DEPTH
from harness.results import RUN_FILE, load_run, read_json

__all__ = ["Thresholds", "MetricSamples", "collect_metrics", "compare_runs"]


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression (defaults are deliberately conservative: CI must not flap)."""

    alpha: float = 0.01
    min_relative_change: float = 0.10
    min_effect_size: float = 0.5
    window_s: float = 2.0
    ttr_increase_s: float = 2.0
    ttr_increase_ratio: float = 0.5
    availability_drop: float = 0.005


@dataclass
class MetricSamples:
    name: str
    samples: list[float]
    lower_is_better: bool
    single: bool = False  # one number per run: judged by thresholds, not by a test


def _windows(requests, window_s: float) -> dict[str, list[float]]:
    """Per-window samples from `frames.latency_over_time`, without the first (warm-up) and last
    (partial) window, nor windows with no successful request."""
    buckets = frames.latency_over_time(requests, window_s)
    inner = buckets.iloc[1:-1].dropna(subset=["p50_ms"])
    return {metric: inner[metric].tolist() for metric in ("throughput_rps", "p50_ms", "p99_ms")}


def _walk(root: Path):
    stack = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        yield directory
        if depth < MAX_DEPTH:
            stack.extend((c, depth + 1) for c in sorted(directory.iterdir()) if c.is_dir())


def collect_metrics(run_dir: str | Path, thresholds: Thresholds = Thresholds()) -> dict[str, MetricSamples]:
    """Return every comparable metric of a saved run, keyed ``<part path>:<metric>``."""
    root = Path(run_dir)
    metrics: dict[str, MetricSamples] = {}

    def add(name: str, samples: list[float], lower: bool, single: bool = False) -> None:
        clean = [float(s) for s in samples if s is not None and math.isfinite(float(s))]
        if clean:
            metrics[name] = MetricSamples(name, clean, lower, single)

    for directory in _walk(root):
        part = directory.relative_to(root).as_posix() or "."
        result_path = directory / "result.json"
        result = read_json(result_path) if result_path.exists() else None
        if isinstance(result, dict) and "experiment" in result:
            add(f"{part}:ttr_s", [result.get("ttr_s")], True, single=True)
            add(f"{part}:availability", [result.get("availability")], False, single=True)
        elif isinstance(result, dict) and "throughput_rps" in result and (directory / "requests.csv").exists():
            windows = _windows(frames.read_requests(directory / "requests.csv"), thresholds.window_s)
            for metric, lower in (("throughput_rps", False), ("p50_ms", True), ("p99_ms", True)):
                add(f"{part}:{metric}", windows.get(metric, []), lower)
        if (directory / "sweep.csv").exists():
            rows = frames.read_csv_frame(directory / "sweep.csv")
            if "status" in rows.columns:
                rows = rows[rows["status"].astype(str).eq("ok")]
            level = next((c for c in ("load_level", "rate_rps", "concurrency") if c in rows.columns), None)
            keys = [k for k in ("precision", "max_batch_size", level) if k]
            if not rows.empty and all(k in rows.columns for k in keys):
                for key, group in rows.groupby(keys):
                    label = ",".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
                    add(f"{part}:{label}:throughput_rps", group["throughput_rps"].tolist(), False)
                    add(f"{part}:{label}:p99_ms", group["p99_ms"].tolist(), True)
    return metrics


def _single_verdict(name: str, base: float, cur: float, lower: bool, t: Thresholds) -> tuple[str, str]:
    if name.endswith(":ttr_s"):
        limit = max(t.ttr_increase_s, base * t.ttr_increase_ratio)
        worse = cur - base > limit
        return (REGRESSED if worse else "no change",
                f"TTR {base:.2f} s -> {cur:.2f} s (regression when it grows by more than {limit:.2f} s)")
    worse = (base - cur) > t.availability_drop if not lower else (cur - base) > t.availability_drop
    return (REGRESSED if worse else "no change",
            f"{base:.5f} -> {cur:.5f} (regression when it drops by more than {t.availability_drop})")


def _environment(run_dir: Path) -> dict[str, Any] | None:
    return load_run(run_dir).environment if (run_dir / RUN_FILE).exists() else None


def compare_runs(current_dir: str | Path, baseline_dir: str | Path, thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """Return the comparison: rows (metric, baseline, current, change, verdict, reason), regressions, warnings."""
    current, baseline = collect_metrics(current_dir, thresholds), collect_metrics(baseline_dir, thresholds)
    rows: list[dict[str, Any]] = []
    regressions: list[str] = []
    warnings: list[str] = []
    env_a, env_b = _environment(Path(baseline_dir)), _environment(Path(current_dir))
    if env_a is None or env_b is None:
        warnings.append("environment fingerprint missing on one side: cannot tell whether the machines match")
    else:
        warnings.extend(f"environment differs: {d}" for d in fingerprint_differences(env_a, env_b))
    for name in sorted(set(current) | set(baseline)):
        if name not in current or name not in baseline:
            warnings.append(f"{name}: only in the {'current' if name in current else 'baseline'} run, not compared")
            continue
        cur, base = current[name], baseline[name]
        if cur.single or base.single:
            b, c = float(np.median(base.samples)), float(np.median(cur.samples))
            verdict, reason = _single_verdict(name, b, c, cur.lower_is_better, thresholds)
            change = (c - b) / abs(b) if b else (0.0 if c == b else math.inf)
        else:
            result = compare(base.samples, cur.samples, metric=name, lower_is_better=cur.lower_is_better,
                             alpha=thresholds.alpha, min_relative_change=thresholds.min_relative_change,
                             min_effect_size=thresholds.min_effect_size)
            b, c, change, verdict, reason = (result.baseline.median, result.current.median, result.relative_change,
                                             result.verdict, result.reason)
        rows.append({"metric": name, "baseline": b, "current": c, "change": change, "verdict": verdict,
                     "beyond_noise": verdict not in ("no change", INCONCLUSIVE), "reason": reason})
        if verdict == REGRESSED:
            regressions.append(reason if reason.startswith(name) else f"{name}: {reason}")
    if not rows:
        warnings.append("no metric is present in both runs: nothing was compared")
    return {"baseline": str(baseline_dir), "current": str(current_dir), "rows": rows, "regressions": regressions,
            "warnings": warnings, "thresholds": thresholds.__dict__}
