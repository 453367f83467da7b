"""The sweep summary, rebuilt from ``sweep.csv`` rows (never only from a live run).

Per point: median and 95% confidence interval (`harness.measure.stats`) of throughput and p50/p95/p99
over its measured windows, plus medians of error rate, CPU, RSS and GPU figures, and whether it meets
the SLO (median p99 <= SLO, error rate within bounds, throughput keeping up with the offered rate:
`harness.sweep.search.classify`). Per configuration (precision, max_batch_size): the best throughput
under the SLO, the peak throughput, and the latency/throughput frontier (Pareto set: no other point
has both higher throughput and lower p99). Across configurations: the overall frontier, batching's
effect (largest vs smallest batch at each load level) and precision's effect (against fp32 at the
same batch: peak-throughput ratio, best-under-SLO ratio, p50 latency ratio at the lightest rate both
meet the SLO at),
next to the accuracy drift of that precision.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping

from harness.measure.stats import summarize_repeats
from harness.sweep.grid import OK
from harness.sweep.search import PASS, PointMeasurement, SearchSettings, classify

__all__ = ["summarize_points", "pareto_frontier", "summarize_sweep"]

_INTERVAL_METRICS = ("throughput_rps", "p50_ms", "p95_ms", "p99_ms")
_MEDIAN_METRICS = ("error_rate", "sent_rate_rps", "cpu_percent", "rss_mb", "gpu_util_percent", "gpu_memory_mb")


def _median(values: list[float]) -> float:
    finite = sorted(v for v in values if isinstance(v, (int, float)) and math.isfinite(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2.0


def summarize_points(rows: Iterable[Mapping[str, Any]], *, p99_ms: float, max_error_rate: float = 0.01) -> list[dict[str, Any]]:
    """Return one summary dict per point (precision, max_batch_size, load_level), in first-seen order."""
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["precision"], int(row["max_batch_size"]), float(row["load_level"]))].append(row)
    settings = SearchSettings(p99_ms=p99_ms, max_error_rate=max_error_rate)
    points = []
    for (precision, batch, level), members in groups.items():
        windows = [r for r in members if r["status"] == OK]
        not_ok = [r for r in members if r["status"] != OK]
        status = not_ok[-1]["status"] if not_ok else OK
        reasons = [r["reason"] for r in members if r.get("reason")]
        point: dict[str, Any] = {
            "precision": precision, "max_batch_size": batch, "load_level": level, "rate_rps": level,
            "status": status, "reason": reasons[-1] if reasons else "", "windows": len(windows),
        }
        for metric in _INTERVAL_METRICS:
            stats = summarize_repeats([r[metric] for r in windows])
            point[metric] = stats.median
            point[f"{metric}_ci"] = [stats.ci.low, stats.ci.high]
            point[f"{metric}_ci_confidence"] = stats.ci.confidence
        for metric in _MEDIAN_METRICS:
            point[metric] = _median([r[metric] for r in windows])
        point["generator_saturated"] = any(bool(r.get("generator_saturated")) for r in windows)
        if windows:
            m = PointMeasurement(
                rate_rps=level, throughput_rps=point["throughput_rps"], p99_ms=point["p99_ms"],
                error_rate=point["error_rate"], p50_ms=point["p50_ms"], p95_ms=point["p95_ms"],
                sent_rate_rps=None if math.isnan(point["sent_rate_rps"]) else point["sent_rate_rps"],
                generator_saturated=point["generator_saturated"],
            )
            verdict, why = classify(m, settings)
            point["meets_slo"], point["slo_verdict"] = verdict == PASS, why
        else:
            point["meets_slo"], point["slo_verdict"] = False, f"not measured ({status})"
        points.append(point)
    return points


def pareto_frontier(points: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return the measured points no other point beats on both throughput (higher) and p99 (lower).

    Sorted by throughput ascending; points without finite throughput and p99 are left out.
    """
    measured = [dict(p) for p in points if math.isfinite(p.get("throughput_rps", math.nan)) and math.isfinite(p.get("p99_ms", math.nan))]

    def dominated(a: Mapping[str, Any]) -> bool:
        return any(
            b["throughput_rps"] >= a["throughput_rps"] and b["p99_ms"] <= a["p99_ms"]
            and (b["throughput_rps"] > a["throughput_rps"] or b["p99_ms"] < a["p99_ms"])
            for b in measured
        )

    frontier = [p for p in measured if not dominated(p)]
    return sorted(frontier, key=lambda p: (p["throughput_rps"], p["p99_ms"]))


def _brief(point: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if point is None:
        return None
    keys = ("precision", "max_batch_size", "load_level", "throughput_rps", "p50_ms", "p99_ms", "error_rate")
    return {k: point[k] for k in keys}


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def summarize_sweep(
    rows: Iterable[Mapping[str, Any]],
    *,
    p99_ms: float,
    max_error_rate: float = 0.01,
    accuracy: Iterable[Mapping[str, Any]] = (),
    searches: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the summary dict of ``sweep_summary.json`` (see module docs) from ``sweep.csv`` rows.

    ``accuracy`` holds `AccuracyDrift.to_dict()` entries; ``searches`` maps "precision/batch" to a
    `SearchResult.to_dict()` when the sweep searched max sustainable rates.
    """
    points = summarize_points(rows, p99_ms=p99_ms, max_error_rate=max_error_rate)
    drift = {a["precision"]: dict(a) for a in accuracy}
    searches = dict(searches or {})
    by_config: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for point in points:
        by_config[(point["precision"], point["max_batch_size"])].append(point)
    configs = []
    for (precision, batch), members in by_config.items():
        measured = [p for p in members if p["windows"] > 0]
        passing = [p for p in measured if p["meets_slo"]]
        best = max(passing, key=lambda p: p["throughput_rps"], default=None)
        peak = max(measured, key=lambda p: p["throughput_rps"], default=None)
        configs.append({
            "precision": precision, "max_batch_size": batch,
            "statuses": {p["status"]: sum(1 for q in members if q["status"] == p["status"]) for p in members},
            "best_under_slo": _brief(best), "peak": _brief(peak),
            "frontier": [_brief(p) for p in pareto_frontier(measured)],
            "max_sustainable": searches.get(f"{precision}/{batch}"),
            "accuracy": drift.get(precision),
        })
    return {
        "slo": {"p99_ms": p99_ms, "max_error_rate": max_error_rate},
        "points": points,
        "configurations": configs,
        "frontier": [_brief(p) for p in pareto_frontier(p for p in points if p["windows"] > 0)],
        "effects": {"batching": _batching_effect(points), "precision": _precision_effect(configs, points, drift)},
        "accuracy": list(drift.values()),
    }


def _throughput(points: list[dict[str, Any]], precision: str, batch: int, level: float) -> float:
    for p in points:
        if (p["precision"], p["max_batch_size"], p["load_level"]) == (precision, batch, level) and p["windows"]:
            return p["throughput_rps"]
    return math.nan


def _batching_effect(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput at the largest batch over the smallest, per precision and load level."""
    effects = []
    for precision in dict.fromkeys(p["precision"] for p in points):
        sizes = sorted({p["max_batch_size"] for p in points if p["precision"] == precision})
        if len(sizes) < 2:
            continue
        small, large = sizes[0], sizes[-1]
        for level in sorted({p["load_level"] for p in points if p["precision"] == precision}):
            a, b = _throughput(points, precision, small, level), _throughput(points, precision, large, level)
            effects.append({"precision": precision, "load_level": level, "small_batch": small, "large_batch": large,
                            "throughput_small_rps": a, "throughput_large_rps": b, "throughput_ratio": _ratio(b, a)})
    return effects


def _precision_effect(configs: list[dict[str, Any]], points: list[dict[str, Any]], drift: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each precision against fp32 at the same batch: speed-ups next to accuracy drift."""
    reference = {c["max_batch_size"]: c for c in configs if c["precision"] == "fp32"}
    effects = []
    for config in configs:
        base = reference.get(config["max_batch_size"])
        if config["precision"] == "fp32" or base is None:
            continue
        batch = config["max_batch_size"]
        def at(precision: str, level: float) -> dict[str, Any] | None:
            for p in points:
                if (p["precision"], p["max_batch_size"], p["load_level"]) == (precision, batch, level) and p["windows"]:
                    return p
            return None

        # latency speed-up where neither side is overloaded: the lightest rate both meet the SLO at
        shared = sorted(level for level in {p["load_level"] for p in points}
                        if (a := at("fp32", level)) and (b := at(config["precision"], level))
                        and a["meets_slo"] and b["meets_slo"])
        light = shared[0] if shared else math.nan

        def p50(precision: str) -> float:
            point = at(precision, light)
            return point["p50_ms"] if point else math.nan

        def figure(c: Mapping[str, Any], name: str) -> float:
            return c[name]["throughput_rps"] if c.get(name) else math.nan

        accuracy = drift.get(config["precision"]) or {}
        effects.append({
            "precision": config["precision"], "max_batch_size": batch,
            "peak_throughput_ratio": _ratio(figure(config, "peak"), figure(base, "peak")),
            "best_under_slo_ratio": _ratio(figure(config, "best_under_slo"), figure(base, "best_under_slo")),
            "p50_speedup_at_light_load": _ratio(p50("fp32"), p50(config["precision"])),  # NaN: no shared passing rate
            "light_load_level": light,
            "forward_speedup": accuracy.get("speedup_vs_fp32", math.nan),
            "max_abs_error": accuracy.get("max_abs_error", math.nan),
            "mean_abs_error": accuracy.get("mean_abs_error", math.nan),
            "max_rel_error": accuracy.get("max_rel_error", math.nan),
            "top1_agreement": accuracy.get("top1_agreement", math.nan),
        })
    return effects
