"""Monitoring-threshold checks over telemetry: p99 latency, sustained GPU utilisation, memory growth.

Each ``check_*`` returns findings (a list of messages, empty when fine); each ``*_alerts`` the same
as `Alert` objects that also say when the alert would first have fired; none raises on bad data.
The three alerts are named `P99_LATENCY`, `GPU_UTILISATION` and `MEMORY_GROWTH` (experiments
declare the ones their fault should raise by these names; `harness.measure.sla` judges them).

Telemetry comes in a neutral shape: either ``(time_s, value)`` pairs, or mappings such as
``{"time_s": ..., "replica": "replica-0", "rss_mb": ..., "cpu_percent": ..., "gpu_util_percent": ...}``.

Definitions (reports quote these):

- **Absent is not zero**: a sample whose value is missing, None or NaN (no GPU, a failed read) is
  skipped. It neither raises nor clears an alert; with no GPU reading at all there is no GPU finding.
- **Series**: mapping samples are split per group: GPU readings per device (``gpu_index``, else
  ``replica``), so a device seen through several replicas' rows is judged once; memory per
  ``replica`` and ``pid``, so a restarted process starts a new series rather than a fake drop.
- **Sustained GPU utilisation**: consecutive readings all above the threshold lasting at least
  ``sustained_s`` (a run lasts from its first reading to the next reading at or under the threshold,
  or one sampling period past its last reading); when the whole series is shorter than
  ``sustained_s``, every reading (at least two) above the threshold counts as sustained.
- **Fired at**: when a monitoring system evaluating the rule at every sample would first have
  fired: for memory growth, the first sample at which the slope over the last ``window_s`` of that
  process (at least 3 samples) exceeds the threshold; for GPU utilisation, ``sustained_s`` into the
  first run above the threshold that lasted that long; for p99, unknown (None: it is judged on a
  whole phase's requests).
- **Memory growth**: the least-squares slope of RSS (MB) over time (s) within a window of
  ``window_s``, sliding over the series one sample at a time; the largest slope is reported, so a
  leak that starts mid-run is caught, while a one-off allocation counts only as its size spread
  over the window (a 300 MB step weighs at most 7.5 MB/s in a 60 s window). A series shorter than
  the window is fitted whole. At least 3 samples are needed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from harness.slo import DEFAULT_P99_MS

__all__ = [
    "P99_LATENCY",
    "GPU_UTILISATION",
    "MEMORY_GROWTH",
    "ALERT_NAMES",
    "Alert",
    "TelemetrySample",
    "series",
    "gpu_group",
    "longest_run_above",
    "slope_per_s",
    "max_window_slope_per_s",
    "check_p99",
    "check_gpu_utilisation",
    "check_memory_growth",
    "p99_alerts",
    "gpu_utilisation_alerts",
    "memory_growth_alerts",
    "first_memory_growth_s",
]

P99_LATENCY = "p99-latency"
GPU_UTILISATION = "gpu-utilisation"
MEMORY_GROWTH = "memory-growth"
ALERT_NAMES = (P99_LATENCY, GPU_UTILISATION, MEMORY_GROWTH)


@dataclass(frozen=True)
class Alert:
    """One alert that fired: its name (one of `ALERT_NAMES`), the finding, and when it would first
    have fired (epoch seconds; None when the rule is judged on a whole phase)."""

    name: str
    message: str
    fired_at_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

TelemetrySample = Mapping[str, Any] | tuple[float, float]
GroupBy = Sequence[str] | Callable[[Mapping[str, Any]], str]
MEMORY_GROUP_KEYS = ("replica", "pid")
_EPS_S = 1e-6
_MIN_SLOPE_SAMPLES = 3


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def gpu_group(sample: Mapping[str, Any]) -> str:
    """Return a GPU reading's series name: its device (``gpu_index``), else its ``replica``."""
    if sample.get("gpu_index") is not None:
        return f"gpu {sample['gpu_index']}"
    return f"replica={sample['replica']}" if sample.get("replica") is not None else ""


def _group_name(sample: Mapping[str, Any], group_by: GroupBy) -> str:
    if callable(group_by):
        return group_by(sample)
    return "/".join(f"{k}={sample[k]}" for k in group_by if sample.get(k) is not None)


def series(
    samples: Iterable[TelemetrySample], key: str, group_by: GroupBy = ("replica",)
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return ``{group: (times_s, values)}`` of ``key``, sorted by time, absent values skipped.

    A ``(time_s, value)`` pair belongs to group ``""``; a mapping to ``group_by(sample)`` when it is
    a callable, else the ``/``-joined ``key=value`` of the ``group_by`` keys it has. Samples without
    a usable time are skipped.
    """
    groups: dict[str, list[tuple[float, float]]] = {}
    for sample in samples:
        if isinstance(sample, Mapping):
            t, value = _number(sample.get("time_s")), _number(sample.get(key))
            name = _group_name(sample, group_by)
        else:
            try:
                t, value = _number(sample[0]), _number(sample[1])
            except (TypeError, IndexError, KeyError):
                continue
            name = ""
        if t is not None and value is not None:
            groups.setdefault(name, []).append((t, value))
    result = {}
    for name, points in sorted(groups.items()):
        points.sort()
        result[name] = (np.array([p[0] for p in points]), np.array([p[1] for p in points]))
    return result


def _period_s(times: np.ndarray) -> float:
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if gaps.size else 0.0


def longest_run_above(times: np.ndarray, values: np.ndarray, threshold: float) -> tuple[float, float | None]:
    """Return (duration_s, start_s) of the longest run of readings above ``threshold`` ((0, None) if none)."""
    period = _period_s(times)
    best: tuple[float, float | None] = (0.0, None)
    index = 0
    while index < times.size:
        if values[index] <= threshold:
            index += 1
            continue
        start = index
        while index < times.size and values[index] > threshold:
            index += 1
        end = times[index] if index < times.size else times[-1] + period
        duration = float(end - times[start])
        if duration > best[0] or best[1] is None:
            best = (duration, float(times[start]))
    return best


def slope_per_s(times: np.ndarray, values: np.ndarray) -> float:
    """Return the least-squares slope of ``values`` over ``times`` (units per second); NaN if undefined."""
    if times.size < 2:
        return math.nan
    centred = times - times.mean()
    denominator = float(np.dot(centred, centred))
    if denominator <= 0:
        return math.nan
    return float(np.dot(centred, values - values.mean()) / denominator)


def max_window_slope_per_s(times: np.ndarray, values: np.ndarray, window_s: float | None) -> tuple[float, float | None]:
    """Return (largest slope, its window's start_s) over sliding windows of ``window_s`` (None: whole series).

    (NaN, None) when fewer than 3 samples. Raises ValueError for a non-positive ``window_s``.
    """
    if window_s is not None and not window_s > 0:
        raise ValueError(f"window_s={window_s!r}: must be greater than zero")
    if times.size < _MIN_SLOPE_SAMPLES:
        return math.nan, None
    if window_s is None or times[-1] - times[0] <= window_s + _EPS_S:
        return slope_per_s(times, values), float(times[0])
    best: tuple[float, float | None] = (math.nan, None)
    for start in range(times.size):
        if times[start] + window_s > times[-1] + _EPS_S:
            break
        stop = int(np.searchsorted(times, times[start] + window_s + _EPS_S, side="right"))
        if stop - start < _MIN_SLOPE_SAMPLES:
            continue
        slope = slope_per_s(times[start:stop], values[start:stop])
        if math.isfinite(slope) and (best[1] is None or slope > best[0]):
            best = (slope, float(times[start]))
    return best


def clock(epoch_s: float) -> str:
    """Return an epoch time as a UTC clock time to the millisecond ("01:33:12.526 UTC"), for messages people read."""
    whole = int(epoch_s)
    return time.strftime("%H:%M:%S", time.gmtime(whole)) + f".{int(round((epoch_s - whole) * 1000)) % 1000:03d} UTC"


def _label(group: str) -> str:
    return f" ({group})" if group else ""


def p99_alerts(p99_ms: float | None, threshold_ms: float = DEFAULT_P99_MS) -> list[Alert]:
    """Return the p99-latency alert when ``p99_ms`` exceeds ``threshold_ms``; none when p99 is None/NaN (unmeasured)."""
    value = _number(p99_ms)
    if value is None or value <= threshold_ms:
        return []
    return [Alert(P99_LATENCY, f"p99 latency {value:.1f} ms > {threshold_ms:g} ms")]


def check_p99(p99_ms: float | None, threshold_ms: float = DEFAULT_P99_MS) -> list[str]:
    """Return a finding when the p99 latency exceeds ``threshold_ms``; none when p99 is None/NaN (unmeasured)."""
    return [alert.message for alert in p99_alerts(p99_ms, threshold_ms)]


def gpu_utilisation_alerts(
    samples: Iterable[TelemetrySample],
    threshold_percent: float = 90.0,
    sustained_s: float = 60.0,
    *,
    key: str = "gpu_util_percent",
    group_by: GroupBy = gpu_group,
) -> list[Alert]:
    """Return one alert per series whose GPU utilisation stayed above ``threshold_percent`` for
    ``sustained_s`` (or the whole, shorter series); nothing for absent GPU readings.
    """
    alerts = []
    for group, (times, values) in series(samples, key, group_by).items():
        duration, start = longest_run_above(times, values, threshold_percent)
        observed = float(times[-1] - times[0]) + _period_s(times)
        whole_short_series = observed < sustained_s and times.size >= 2 and bool((values > threshold_percent).all())
        if start is not None and (duration >= sustained_s - _EPS_S or whole_short_series):
            span = "the whole observation" if duration < sustained_s else f">= {sustained_s:g} s"
            alerts.append(Alert(
                GPU_UTILISATION,
                f"GPU utilisation above {threshold_percent:g}% for {duration:.1f} s ({span}) from {clock(start)}{_label(group)}",
                start + min(duration, sustained_s)))
    return alerts


def check_gpu_utilisation(
    samples: Iterable[TelemetrySample],
    threshold_percent: float = 90.0,
    sustained_s: float = 60.0,
    *,
    key: str = "gpu_util_percent",
    group_by: GroupBy = gpu_group,
) -> list[str]:
    """Return one finding per series whose GPU utilisation stayed above ``threshold_percent`` for
    ``sustained_s`` (or the whole, shorter series); nothing for absent GPU readings.
    """
    return [a.message for a in gpu_utilisation_alerts(samples, threshold_percent, sustained_s, key=key, group_by=group_by)]


def first_memory_growth_s(
    times: np.ndarray, values: np.ndarray, threshold_mb_per_s: float, window_s: float | None
) -> float | None:
    """Return when an online memory-growth rule (see **Fired at**) first fires on one series, or None."""
    for end in range(_MIN_SLOPE_SAMPLES, times.size + 1):
        start = 0 if window_s is None else int(times.searchsorted(times[end - 1] - window_s, side="left"))
        if end - start < _MIN_SLOPE_SAMPLES:
            continue
        slope = slope_per_s(times[start:end], values[start:end])
        if math.isfinite(slope) and slope > threshold_mb_per_s:
            return float(times[end - 1])
    return None


def memory_growth_alerts(
    samples: Iterable[TelemetrySample],
    threshold_mb_per_s: float = 10.0,
    window_s: float | None = 60.0,
    *,
    key: str = "rss_mb",
    group_by: GroupBy = MEMORY_GROUP_KEYS,
) -> list[Alert]:
    """Return one alert per series whose RSS grew faster than ``threshold_mb_per_s`` (a leak).

    Raises ValueError for a non-positive ``window_s``.
    """
    alerts = []
    for group, (times, values) in series(samples, key, group_by).items():
        slope, start = max_window_slope_per_s(times, values, window_s)
        if start is not None and math.isfinite(slope) and slope > threshold_mb_per_s:
            over = "the whole series" if window_s is None or times[-1] - times[0] <= window_s else f"{window_s:g} s"
            alerts.append(Alert(
                MEMORY_GROWTH,
                f"memory growth {slope:.2f} MB/s > {threshold_mb_per_s:g} MB/s (least squares over {over} from "
                f"{clock(start)}){_label(group)}",
                first_memory_growth_s(times, values, threshold_mb_per_s, window_s)))
    return alerts


def check_memory_growth(
    samples: Iterable[TelemetrySample],
    threshold_mb_per_s: float = 10.0,
    window_s: float | None = 60.0,
    *,
    key: str = "rss_mb",
    group_by: GroupBy = MEMORY_GROUP_KEYS,
) -> list[str]:
    """Return one finding per series whose RSS grew faster than ``threshold_mb_per_s`` (a leak).

    Raises ValueError for a non-positive ``window_s``.
    """
    return [a.message for a in memory_growth_alerts(samples, threshold_mb_per_s, window_s, key=key, group_by=group_by)]
