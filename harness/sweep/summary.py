"""The sweep summary, rebuilt from ``sweep.csv`` rows and the saved searches (never only from a live run).

Per point: median and 95% confidence interval (`harness.measure.stats`) of throughput and p50/p95/p99
over its measured windows, plus medians of error rate, CPU, RSS and GPU figures, and whether it meets
the SLO (median p99 <= SLO, error rate within bounds, throughput keeping up with the offered rate:
`harness.sweep.search.classify`).

Per configuration (precision, max_batch_size): its *max rate* under the SLO (`harness.sweep.figures`):
from its max-rate search when one ran (exact when it converged, else "at least" the highest passing
rate), else from the grid, where it is only ever a lower bound (at a level the service keeps up
with, throughput is the offered load); the highest grid point that met the SLO; the measured peak;
and the latency/throughput frontier (Pareto set over grid points and search probes: no other point
has both higher throughput and lower p99).

Effects (every one from comparable figures, never from throughput at a load both sides sustain):
- batching: max rate at the largest batch over max rate at the smallest, per precision;
- precision: max rate at that precision over fp32's, per batch size, next to its accuracy drift;
- each next to the forward pass's own speed-up measured in the same run (per-sample speed at the
  largest batch over the smallest; fp32's forward time over the precision's, same batch) and the
  ratio of the two (how much of the forward pass's gain the service delivers), and next to the
  effect the forward pass predicts for the service (Amdahl: only the forward part of a request's cost
  changes; the rest, measured as the reference's cost per request at its max rate less its forward
  time, stays, or for batching is amortised by the batch as far as it is paid per batch: a range),
  with the ratio of the effect to that prediction;
- latency at the same load below both knees: p50 of one side over the other's at the lightest grid
  rate both met the SLO at and both sustain by their max rates (rate mode only).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping

from harness.measure.stats import summarize_repeats
from harness.slo import DEFAULT_MAX_ERROR_RATE
from harness.sweep.figures import NOISE_BAND, UNCLEAR, UNKNOWN, Bracket, direction, plain_ratio, rate_from_grid, rate_from_search, ratio
from harness.sweep.grid import OK, RATE
from harness.sweep.search import PASS, PointMeasurement, SearchSettings, classify

__all__ = ["summarize_points", "probe_points", "pareto_frontier", "summarize_sweep", "EFFECTS_BASIS"]

_INTERVAL_METRICS = ("throughput_rps", "p50_ms", "p95_ms", "p99_ms")
_MEDIAN_METRICS = ("error_rate", "sent_rate_rps", "cpu_percent", "rss_mb", "gpu_util_percent", "gpu_memory_mb")
REFERENCE_PRECISION = "fp32"

EFFECTS_BASIS = (
    "Effects are ratios of each configuration's max rate under the p99 SLO (found by search; a grid "
    "level the service kept up with only gives a lower bound, since throughput there is the offered "
    "load). A figure that is a bound says so: 'at least', 'at most', 'between'. Each is set against "
    "the forward pass's own speed-up measured in the same run, and both get a direction: a gain or a loss "
    f"only beyond {NOISE_BAND:.0%} either side of 1, since two searches of one configuration may differ by that "
    "much; closer to 1 it is none beyond noise."
)


def _median(values: list[float]) -> float:
    finite = sorted(v for v in values if isinstance(v, (int, float)) and math.isfinite(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2.0


def summarize_points(rows: Iterable[Mapping[str, Any]], *, p99_ms: float, max_error_rate: float = DEFAULT_MAX_ERROR_RATE) -> list[dict[str, Any]]:
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
            "status": status, "reason": reasons[-1] if reasons else "", "windows": len(windows), "source": "grid",
        }
        for metric in _INTERVAL_METRICS:
            stats = summarize_repeats([r.get(metric, math.nan) for r in windows])
            point[metric] = stats.median
            point[f"{metric}_ci"] = [stats.ci.low, stats.ci.high]
            point[f"{metric}_ci_confidence"] = stats.ci.confidence
        for metric in _MEDIAN_METRICS:
            point[metric] = _median([r.get(metric, math.nan) for r in windows])
        point["generator_saturated"] = any(bool(r.get("generator_saturated")) for r in windows)
        if windows:
            m = PointMeasurement(
                rate_rps=level, throughput_rps=point["throughput_rps"], p99_ms=point["p99_ms"],
                error_rate=0.0 if math.isnan(point["error_rate"]) else point["error_rate"],
                p50_ms=point["p50_ms"], p95_ms=point["p95_ms"],
                sent_rate_rps=None if math.isnan(point["sent_rate_rps"]) else point["sent_rate_rps"],
                generator_saturated=point["generator_saturated"],
            )
            verdict, why = classify(m, settings)
            point["meets_slo"], point["slo_verdict"] = verdict == PASS, why
        else:
            point["meets_slo"], point["slo_verdict"] = False, f"not measured ({status})"
        points.append(point)
    return points


def probe_points(searches: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return every search probe as a point (source "search"): the rates the search chose around the knee."""
    points = []
    for key, search in searches.items():
        precision, _, batch = key.partition("/")
        for probe in search.get("probes") or []:
            m = probe.get("measurement") or {}
            points.append({
                "precision": precision, "max_batch_size": int(batch), "load_level": float(probe["rate_rps"]),
                "rate_rps": float(probe["rate_rps"]), "source": "search", "windows": int(m.get("windows") or 0),
                "throughput_rps": _float(m.get("throughput_rps")), "p50_ms": _float(m.get("p50_ms")),
                "p95_ms": _float(m.get("p95_ms")), "p99_ms": _float(m.get("p99_ms")),
                "error_rate": _float(m.get("error_rate")), "meets_slo": probe.get("verdict") == PASS,
                "slo_verdict": probe.get("reason", ""), "verdict": probe.get("verdict"),
            })
    return points


def _throughput(point: Mapping[str, Any]) -> float:
    value = point.get("throughput_rps", math.nan)
    return value if math.isfinite(value) else -math.inf


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


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
    keys = ("precision", "max_batch_size", "load_level", "throughput_rps", "p50_ms", "p99_ms", "error_rate", "source")
    return {k: point.get(k) for k in keys}


def summarize_sweep(
    rows: Iterable[Mapping[str, Any]],
    *,
    p99_ms: float,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    accuracy: Iterable[Mapping[str, Any]] = (),
    searches: Mapping[str, Any] | None = None,
    load_mode: str = RATE,
) -> dict[str, Any]:
    """Return the summary dict of ``sweep_summary.json`` (see module docs) from ``sweep.csv`` rows.

    ``accuracy`` holds `AccuracyDrift.to_dict()` entries (with their forward-pass timings);
    ``searches`` maps "precision/batch" to a `SearchResult.to_dict()` when the sweep searched max rates.
    """
    points = summarize_points(rows, p99_ms=p99_ms, max_error_rate=max_error_rate)
    drift = {a["precision"]: dict(a) for a in accuracy}
    searches = {k: dict(v) for k, v in (searches or {}).items() if isinstance(v, Mapping)}
    probes = probe_points(searches)
    by_config: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for point in points:
        by_config[(point["precision"], point["max_batch_size"])].append(point)
    for key in searches:
        precision, _, batch = key.partition("/")
        by_config.setdefault((precision, int(batch)), [])
    configs = []
    for (precision, batch), members in by_config.items():
        measured = [p for p in members if p["windows"] > 0]
        passing = [p for p in measured if p["meets_slo"]]
        search = searches.get(f"{precision}/{batch}")
        max_rate = rate_from_search(search) if search else rate_from_grid(members)
        own_probes = [p for p in probes if (p["precision"], p["max_batch_size"]) == (precision, batch)]
        configs.append({
            "precision": precision, "max_batch_size": batch,
            "statuses": {p["status"]: sum(1 for q in members if q["status"] == p["status"]) for p in members},
            "max_rate": max_rate.to_dict(),
            "best_under_slo": _brief(max(passing, key=lambda p: p["throughput_rps"], default=None)),
            "peak": _brief(max(measured + own_probes, key=_throughput, default=None)),
            "frontier": [_brief(p) for p in pareto_frontier(measured + own_probes)],
            "max_sustainable": search,
            "accuracy": drift.get(precision),
        })
    rates = {(c["precision"], c["max_batch_size"]): Bracket.from_dict(c["max_rate"]) for c in configs}
    return {
        "slo": {"p99_ms": p99_ms, "max_error_rate": max_error_rate},
        "load_mode": load_mode,
        "points": points,
        "probes": probes,
        "configurations": configs,
        "frontier": [_brief(p) for p in pareto_frontier([p for p in points if p["windows"] > 0] + probes)],
        "effects": {
            "basis": EFFECTS_BASIS,
            "batching": _batching_effect(rates, points, drift, load_mode),
            "precision": _precision_effect(rates, points, drift, load_mode),
        },
        "searches": searches,
        "accuracy": list(drift.values()),
    }


def _forward_ms(drift: Mapping[str, Any], precision: str, batch: int) -> float:
    timed = (drift.get(precision) or {}).get("forward_ms_by_batch") or {}
    return _float(timed.get(str(batch)))


def _same_load_p50(points: list[dict[str, Any]], a: tuple[str, int], b: tuple[str, int], rates: Mapping[tuple, Bracket],
                   load_mode: str) -> tuple[float, float, float]:
    """Return (load, p50 of a, p50 of b) at the lightest grid rate both met the SLO at, below both knees."""
    if load_mode != RATE:
        return math.nan, math.nan, math.nan  # equal client counts are not equal loads
    by_key = {(p["precision"], p["max_batch_size"], p["load_level"]): p for p in points if p["windows"]}
    for level in sorted({p["load_level"] for p in points}):
        pa, pb = by_key.get((*a, level)), by_key.get((*b, level))
        below = all((rates[c].low or 0.0) >= level for c in (a, b) if c in rates)
        if pa and pb and pa["meets_slo"] and pb["meets_slo"] and below:
            return level, pa["p50_ms"], pb["p50_ms"]
    return math.nan, math.nan, math.nan


def _expected(b: Bracket, forward_a_ms: float, forward_b_ms: float, batch_share: float) -> tuple[Bracket, float, float]:
    """Return (the effect the forward pass predicts, the reference's forward share, its other cost per request ms).

    At the reference's (b's) max rate one request costs ``1000 / rate`` ms of service time, of which
    ``forward_b_ms`` (its forward time per request, full batches) is the forward pass; the rest is HTTP,
    JSON, queueing and Python. Precision does not change the rest: effect = cost of b / (rest + a's
    forward time per request) (Amdahl). A larger batch may amortise the part of the rest paid once per
    batch (waking the batcher, dispatching a forward): from none of it (Amdahl, the low end) to all of
    it (the rest x ``batch_share``, the smaller batch over the larger: the high end), so the
    prediction for batching is that range.
    """
    if not (b.value > 0 and math.isfinite(forward_a_ms) and math.isfinite(forward_b_ms)):
        return plain_ratio(math.nan, math.nan), math.nan, math.nan
    per_request_ms = 1000.0 / b.value
    rest_ms = max(0.0, per_request_ms - forward_b_ms)
    low = per_request_ms / (rest_ms + forward_a_ms)
    high = per_request_ms / (rest_ms * batch_share + forward_a_ms)
    detail = (f"{rest_ms:.2f} ms per request outside the forward pass at the reference's max rate, "
              + ("paid per request (Amdahl)" if batch_share >= 1.0 else "paid per request (low end) to per batch (high end)"))
    expected = (plain_ratio(per_request_ms, rest_ms + forward_a_ms, source="forward", detail=detail)
                if high - low <= 1e-9 * low else Bracket(low, low, high, False, "forward", detail))
    return expected, min(1.0, forward_b_ms / per_request_ms), rest_ms


def _effect(key_a: tuple[str, int], a: Bracket, key_b: tuple[str, int], b: Bracket, forward: Bracket,
            drift: Mapping[str, Any]) -> dict[str, Any]:
    """Return effect = a / b (bracketed), the forward pass's own speed-up, the service-level effect the forward
    pass predicts (`_expected`), the ratios of the effect to both, and the inputs used."""
    effect = ratio(a, b, detail=f"max rate of {key_a[0]} batch {key_a[1]} / {key_b[0]} batch {key_b[1]}")
    if effect.bound == UNKNOWN:
        why = "no failing rate bounds either side: the grid topped out for both (search for max rates)"
        effect = Bracket(math.nan, None, None, False, "ratio", why)
    versus = ratio(effect, forward,
                   detail="effect / forward-pass speed-up: the share of the forward pass's gain the service delivers")
    expected, share, rest_ms = _expected(b, _forward_ms(drift, *key_a) / key_a[1], _forward_ms(drift, *key_b) / key_b[1],
                                         key_b[1] / key_a[1])
    inputs = {role: {"precision": key[0], "max_batch_size": key[1], **figure.to_dict()}
              for role, key, figure in (("numerator", key_a, a), ("denominator", key_b, b))}
    said = {"effect": direction(effect), "forward": direction(forward)}
    return {"effect": effect.to_dict(2), "forward_speedup": forward.to_dict(2), "effect_vs_forward": versus.to_dict(2),
            "direction": {**said, "agree": said["effect"] == said["forward"] and UNCLEAR not in said.values()},
            "expected_from_forward": expected.to_dict(2),
            "effect_vs_expected": ratio(effect, expected, detail="effect / the effect the forward pass predicts").to_dict(2),
            "forward_share": share, "other_ms_per_request": rest_ms, "inputs": inputs}


def _batching_effect(rates: Mapping[tuple, Bracket], points: list[dict[str, Any]], drift: Mapping[str, Any],
                     load_mode: str) -> list[dict[str, Any]]:
    """Max rate at the largest batch over the smallest, per precision, with the forward pass's per-sample gain."""
    effects = []
    for precision in dict.fromkeys(p for p, _ in rates):
        sizes = sorted(b for p, b in rates if p == precision)
        if len(sizes) < 2:
            continue
        small, large = sizes[0], sizes[-1]
        per_sample_small = _forward_ms(drift, precision, small) / small
        per_sample_large = _forward_ms(drift, precision, large) / large
        forward = plain_ratio(per_sample_small, per_sample_large,
                              detail=f"per-sample forward time at batch {small} / at batch {large}")
        entry = {"precision": precision, "small_batch": small, "large_batch": large,
                 **_effect((precision, large), rates[(precision, large)], (precision, small), rates[(precision, small)],
                           forward, drift)}
        level, p50_large, p50_small = _same_load_p50(points, (precision, large), (precision, small), rates, load_mode)
        entry.update(same_load_rps=level, p50_ms_large=p50_large, p50_ms_small=p50_small,
                     p50_speedup_at_same_load=plain_ratio(p50_small, p50_large).value)
        effects.append(entry)
    return effects


def _precision_effect(rates: Mapping[tuple, Bracket], points: list[dict[str, Any]], drift: Mapping[str, Any],
                      load_mode: str) -> list[dict[str, Any]]:
    """Each precision's max rate over fp32's at the same batch, with the forward pass's gain and accuracy drift."""
    effects = []
    for precision, batch in rates:
        if precision == REFERENCE_PRECISION or (REFERENCE_PRECISION, batch) not in rates:
            continue
        forward = plain_ratio(_forward_ms(drift, REFERENCE_PRECISION, batch), _forward_ms(drift, precision, batch),
                              detail=f"fp32 forward time / {precision}'s at batch {batch}")
        entry = {"precision": precision, "max_batch_size": batch,
                 **_effect((precision, batch), rates[(precision, batch)], (REFERENCE_PRECISION, batch),
                           rates[(REFERENCE_PRECISION, batch)], forward, drift)}
        level, p50_p, p50_ref = _same_load_p50(points, (precision, batch), (REFERENCE_PRECISION, batch), rates, load_mode)
        accuracy = drift.get(precision) or {}
        entry.update(same_load_rps=level, p50_ms=p50_p, p50_ms_fp32=p50_ref,
                     p50_speedup_at_same_load=plain_ratio(p50_ref, p50_p).value,
                     **{k: _float(accuracy.get(k)) for k in ("max_abs_error", "mean_abs_error", "max_rel_error",
                                                             "top1_agreement")})
        effects.append(entry)
    return effects
