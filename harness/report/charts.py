"""DataFrames -> matplotlib figures (object API, Agg canvas; never pyplot or show()).

Each function takes tidy frames and returns a `Figure`, or None when there is nothing to draw, so a
writer can skip a chart instead of embedding an empty one. `to_png` renders a figure to PNG bytes.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "to_png",
    "chaos_timeline",
    "load_over_time",
    "telemetry_over_time",
    "frontier",
    "batch_effect",
    "capacity_chart",
]

GOOD = "#2e7d32"
BAD = "#c62828"
NEUTRAL = "#455a64"
ACCENT = "#1565c0"
EVENT_COLOURS = {
    "Killing": "#c62828", "OOMKilled": "#6a1b9a", "Exited": "#ad1457", "Unhealthy": "#ef6c00",
    "NotReady": "#f9a825", "BackOff": "#8d6e63", "Started": "#0277bd", "Ready": "#2e7d32",
    "Recovered": "#2e7d32",
}
_MARKED_EVENTS = tuple(EVENT_COLOURS)
PALETTE = ("#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f")


def to_png(figure: Figure, dpi: int = 110) -> bytes:
    """Return the figure rendered as PNG bytes."""
    FigureCanvasAgg(figure)  # attach an Agg canvas: no pyplot, no GUI backend
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _figure(width: float = 9.0, height: float = 3.6, rows: int = 1, sharex: bool = True, ratios=None):
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=sharex, gridspec_kw={"height_ratios": ratios} if ratios else None)
    axes = list(axes) if rows > 1 else [axes]
    for axis in axes:  # "+4.516e2" offsets hide the values people read off a chart: show them plainly
        axis.ticklabel_format(axis="y", useOffset=False, style="plain")
    return figure, axes


def chaos_timeline(
    timeline: pd.DataFrame,
    events: pd.DataFrame,
    injected_at_s: float,
    *,
    recovered_at_s: float | None = None,
    slo_latency_ms: float | None = None,
    window: tuple[float, float] | None = None,
    title: str = "",
) -> Figure | None:
    """Return the prober's view of a fault: latency of each probe (failures marked) and platform events.

    The x axis is seconds from injection; the fault is a red line at 0, recovery a dashed green line.
    ``window`` (epoch seconds) clips the view to the measured window (deployment start-up and
    teardown are not part of the experiment).
    """
    if window is not None:
        timeline = timeline[(timeline["t_s"] >= window[0]) & (timeline["t_s"] <= window[1])]
    if timeline.empty:
        return None
    t = timeline["t_s"].to_numpy(float) - injected_at_s
    ok = timeline["ok"].to_numpy(bool)
    latency = timeline["latency_ms"].to_numpy(float)
    figure, (top, bottom) = _figure(9.0, 4.4, rows=2, ratios=[3, 1])
    top.scatter(t[ok], latency[ok], s=6, color=GOOD, label="probe ok", linewidths=0)
    ceiling = float(np.nanmax(latency[ok])) if ok.any() else 1.0
    if slo_latency_ms is not None and slo_latency_ms < ceiling * 4:
        ceiling = max(ceiling, slo_latency_ms)
        top.axhline(slo_latency_ms, color=NEUTRAL, linestyle=":", linewidth=1, label=f"latency SLO {slo_latency_ms:g} ms")
    if (~ok).any():
        top.scatter(t[~ok], np.full(int((~ok).sum()), ceiling * 1.08), marker="x", s=14, color=BAD, label="probe failed")
    top.set_ylim(0, ceiling * 1.15)
    top.set_ylabel("probe latency (ms)")
    for axis in (top, bottom):
        axis.axvline(0.0, color=BAD, linewidth=1.5)
        if recovered_at_s is not None:
            axis.axvline(recovered_at_s - injected_at_s, color=GOOD, linewidth=1.5, linestyle="--")
        axis.grid(alpha=0.25)
    top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=7, ncols=4, frameon=False)
    # success rate over 0.5 s buckets below, with the platform's events as vertical lines
    bucket = np.floor(t / 0.5) * 0.5
    rate = pd.Series(ok.astype(float)).groupby(bucket).mean()
    bottom.step(rate.index.to_numpy(float), rate.to_numpy(float) * 100, where="post", color=ACCENT, linewidth=1)
    bottom.set_ylim(-5, 110)
    bottom.set_ylabel("ok %")
    bottom.set_xlabel("seconds from fault injection (red: fault, dashed green: recovered)")
    if not events.empty:
        x_events = events["time_s"].to_numpy(float) - injected_at_s
        inside = (x_events >= t.min() - 0.5) & (x_events <= t.max() + 0.5)
        shown = events[inside & events["type"].isin(_MARKED_EVENTS).to_numpy()]
        seen: set[str] = set()
        for _, event in shown.iterrows():
            kind = str(event["type"])
            x = float(event["time_s"]) - injected_at_s
            if kind == "Unhealthy":  # frequent: a tick, not a line
                bottom.plot([x], [2], marker="|", markersize=8, color=EVENT_COLOURS[kind],
                            label=kind if kind not in seen else None, linestyle="none")
            else:
                bottom.axvline(x, color=EVENT_COLOURS.get(kind, NEUTRAL), linewidth=1, alpha=0.85,
                               label=kind if kind not in seen else None)
            seen.add(kind)
        if seen:
            bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6, frameon=False)
    top.set_title(title or "client-side prober during the fault", fontsize=10, pad=18)
    return figure


def load_over_time(buckets: pd.DataFrame, title: str = "load over time") -> Figure | None:
    """Return throughput and p50/p99 latency per time bucket (from `frames.latency_over_time`)."""
    if buckets.empty:
        return None
    t = buckets["t_s"].to_numpy(float) - float(buckets["t_s"].min())
    figure, (top, bottom) = _figure(9.0, 4.0, rows=2)
    top.plot(t, buckets["throughput_rps"], color=ACCENT, linewidth=1.2, label="ok req/s")
    if buckets["errors"].sum() > 0:
        top.bar(t, buckets["errors"], width=0.8, color=BAD, alpha=0.6, label="errors")
    top.set_ylabel("req/s")
    top.legend(fontsize=7, frameon=False)
    bottom.plot(t, buckets["p50_ms"], color=GOOD, linewidth=1, label="p50")
    bottom.plot(t, buckets["p99_ms"], color=BAD, linewidth=1, label="p99")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds from start")
    bottom.legend(fontsize=7, frameon=False)
    for axis in (top, bottom):
        axis.grid(alpha=0.25)
    top.set_title(title, fontsize=10)
    return figure


def telemetry_over_time(telemetry: pd.DataFrame, origin_s: float | None = None, title: str = "telemetry") -> Figure | None:
    """Return RSS and CPU per replica over time, plus GPU utilisation when a GPU was present."""
    if telemetry.empty:
        return None
    process = telemetry[~telemetry["replica"].astype(str).str.startswith("gpu:")]
    gpu = telemetry[telemetry["replica"].astype(str).str.startswith("gpu:")]
    has_gpu = not gpu.empty and gpu["gpu_util_percent"].notna().any()
    origin = float(telemetry["time_s"].min()) if origin_s is None else origin_s
    figure, axes = _figure(9.0, 5.4 if has_gpu else 3.8, rows=3 if has_gpu else 2)
    for index, (replica, rows) in enumerate(process.groupby("replica")):
        colour = PALETTE[index % len(PALETTE)]
        x = rows["time_s"].to_numpy(float) - origin
        axes[0].plot(x, rows["rss_mb"], color=colour, linewidth=1, label=str(replica))
        axes[1].plot(x, rows["cpu_percent"], color=colour, linewidth=1)
    axes[0].set_ylabel("RSS (MiB)")
    axes[1].set_ylabel("CPU %")
    if has_gpu:
        for index, (device, rows) in enumerate(gpu.groupby("replica")):
            axes[2].plot(rows["time_s"].to_numpy(float) - origin, rows["gpu_util_percent"],
                         color=PALETTE[index % len(PALETTE)], linewidth=1, label=str(device))
        axes[2].set_ylabel("GPU util %")
    axes[-1].set_xlabel("seconds" + (" from fault injection" if origin_s is not None else " from start"))
    if len(process["replica"].unique()) > 0:
        axes[0].legend(fontsize=7, frameon=False, ncols=4)
    for axis in axes:
        axis.grid(alpha=0.25)
    axes[0].set_title(title + ("" if has_gpu else " (no GPU present)"), fontsize=10)
    return figure


def frontier(points: pd.DataFrame, slo_latency_ms: float | None = None) -> Figure | None:
    """Return throughput vs p99 per precision and batch size (one point per configuration and load level).

    Expects columns precision, max_batch_size, throughput_rps, p99_ms (medians per point).
    """
    needed = {"precision", "max_batch_size", "throughput_rps", "p99_ms"}
    if points.empty or not needed <= set(points.columns):
        return None
    data = points.dropna(subset=["throughput_rps", "p99_ms"])
    if data.empty:
        return None
    figure, (axis,) = _figure(7.5, 4.2)
    markers = ("o", "s", "^", "D", "v", "P")
    batches = sorted(data["max_batch_size"].unique())
    for p_index, (precision, rows) in enumerate(data.groupby("precision")):
        colour = PALETTE[p_index % len(PALETTE)]
        for b_index, batch in enumerate(batches):
            sub = rows[rows["max_batch_size"] == batch].sort_values("throughput_rps")
            if sub.empty:
                continue
            axis.plot(sub["throughput_rps"], sub["p99_ms"], marker=markers[b_index % len(markers)], color=colour,
                      linewidth=1, markersize=5, label=f"{precision}, batch {int(batch)}")
    if slo_latency_ms is not None:
        axis.axhline(slo_latency_ms, color=BAD, linestyle=":", linewidth=1, label=f"p99 SLO {slo_latency_ms:g} ms")
    axis.set_xlabel("throughput (req/s)")
    axis.set_ylabel("p99 latency (ms)")
    axis.set_yscale("log")
    axis.grid(alpha=0.25, which="both")
    axis.legend(fontsize=7, frameon=False)
    axis.set_title("latency / throughput frontier", fontsize=10)
    return figure


def batch_effect(best: pd.DataFrame) -> Figure | None:
    """Return best throughput under the SLO by max_batch_size, one bar group per precision.

    Expects columns precision, max_batch_size, best_throughput_rps (NaN when no point met the SLO).
    """
    needed = {"precision", "max_batch_size", "best_throughput_rps"}
    if best.empty or not needed <= set(best.columns):
        return None
    precisions = sorted(best["precision"].unique())
    batches = sorted(best["max_batch_size"].unique())
    width = 0.8 / max(1, len(precisions))
    figure, (axis,) = _figure(7.5, 3.6)
    for p_index, precision in enumerate(precisions):
        rows = best[best["precision"] == precision].set_index("max_batch_size")
        values = [float(rows["best_throughput_rps"].get(b, np.nan)) for b in batches]
        x = np.arange(len(batches)) + p_index * width
        bars = axis.bar(x, np.nan_to_num(values), width=width, color=PALETTE[p_index % len(PALETTE)], label=precision)
        for bar, value in zip(bars, values):
            text = "n/a" if math.isnan(value) else f"{value:.0f}"
            axis.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
    axis.set_xticks(np.arange(len(batches)) + width * (len(precisions) - 1) / 2, [f"batch {int(b)}" for b in batches])
    axis.set_ylabel("best req/s under the p99 SLO")
    axis.grid(alpha=0.25, axis="y")
    axis.legend(fontsize=7, frameon=False)
    axis.set_title("batching and precision effect", fontsize=10)
    return figure


def capacity_chart(measured: Sequence[Mapping[str, Any]], per_replica_rps: float | None,
                   target_rps: float | None = None) -> Figure | None:
    """Return measured max rate per replica count against the linear prediction.

    ``measured`` rows need ``replicas`` and ``measured_rps``.
    """
    rows = [r for r in measured if r.get("measured_rps") is not None]
    if not rows:
        return None
    replicas = [int(r["replicas"]) for r in rows]
    values = [float(r["measured_rps"]) for r in rows]
    figure, (axis,) = _figure(6.5, 3.6)
    axis.bar(replicas, values, width=0.5, color=ACCENT, label="measured max rate under SLO")
    if per_replica_rps:
        xs = np.arange(0, max(replicas) + 2)
        axis.plot(xs, xs * per_replica_rps, color=NEUTRAL, linestyle="--", linewidth=1, label="linear prediction")
    if target_rps:
        axis.axhline(target_rps, color=BAD, linestyle=":", linewidth=1, label=f"target {target_rps:g} req/s")
    axis.set_xlabel("replicas")
    axis.set_ylabel("req/s")
    axis.set_xticks(sorted(set(replicas)))
    axis.grid(alpha=0.25, axis="y")
    axis.legend(fontsize=7, frameon=False)
    axis.set_title("capacity: measured vs linear model", fontsize=10)
    return figure
