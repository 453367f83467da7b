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
    "concurrency_curves",
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


def frontier(points: pd.DataFrame, slo_latency_ms: float | None = None,
             knees: Sequence[Mapping[str, Any]] = ()) -> Figure | None:
    """Return p99 against throughput per precision and batch size: grid points and search probes.

    Expects columns precision, max_batch_size, load_level (the offered rate), throughput_rps, p99_ms
    and optionally source ("grid" | "search": probes are drawn hollow). The points of a configuration
    are joined in order of offered rate, so its curve bends up where throughput stops following the
    offered load. ``knees`` (precision, max_batch_size, value, bound) star each configuration's max
    rate under the SLO at the throughput its passing probe measured, "≥" where it is a lower bound.
    """
    needed = {"precision", "max_batch_size", "throughput_rps", "p99_ms"}
    if points.empty or not needed <= set(points.columns):
        return None
    data = points.dropna(subset=["throughput_rps", "p99_ms"])
    data = data[data["p99_ms"] > 0]
    if data.empty:
        return None
    order = "load_level" if "load_level" in data.columns else "throughput_rps"
    figure, (axis,) = _figure(7.8, 4.4)
    markers = ("o", "s", "^", "D", "v", "P")
    batches = sorted(data["max_batch_size"].unique())
    colours: dict[tuple[str, int], str] = {}
    for precision, rows in data.groupby("precision"):
        for b_index, batch in enumerate(batches):
            sub = rows[rows["max_batch_size"] == batch].sort_values(order)
            if sub.empty:
                continue
            colour = PALETTE[len(colours) % len(PALETTE)]  # one colour per configuration
            colours[(str(precision), int(batch))] = colour
            marker = markers[b_index % len(markers)]
            axis.plot(sub["throughput_rps"], sub["p99_ms"], color=colour, linewidth=1, alpha=0.8, marker=marker,
                      markersize=0, label=f"{precision}, batch {int(batch)}")
            probe = sub["source"].eq("search").to_numpy() if "source" in sub.columns else np.zeros(len(sub), bool)
            axis.scatter(sub["throughput_rps"][~probe], sub["p99_ms"][~probe], marker=marker, color=colour, s=24, zorder=3)
            axis.scatter(sub["throughput_rps"][probe], sub["p99_ms"][probe], marker=marker, facecolors="none",
                         edgecolors=colour, s=24, zorder=3)
    for k_index, knee in enumerate(knees):
        value = knee.get("value")
        key = (str(knee.get("precision")), int(knee.get("max_batch_size") or 0))
        if not isinstance(value, (int, float)) or not value > 0 or key not in colours:
            continue
        at = data[(data["precision"] == key[0]) & (data["max_batch_size"] == key[1])]
        at = at[np.isclose(at[order].astype(float), float(value))] if order == "load_level" else at.iloc[0:0]
        if at.empty:
            continue
        x, y = float(at["throughput_rps"].iloc[-1]), float(at["p99_ms"].iloc[-1])
        axis.scatter([x], [y], marker="*", s=160, color=colours[key], edgecolors="black", linewidths=0.6, zorder=4)
        prefix = "" if knee.get("bound") == "exact" else "≥"
        axis.annotate(f"{prefix}{value:.0f}", (x, y), textcoords="offset points", xytext=(5, -12 - 9 * (k_index % 4)),
                      fontsize=7, color=colours[key])
    if slo_latency_ms is not None:
        axis.axhline(slo_latency_ms, color=BAD, linestyle=":", linewidth=1, label=f"p99 SLO {slo_latency_ms:g} ms")
    axis.set_xlabel("throughput (req/s; hollow: search probes)")
    axis.set_ylabel("p99 latency (ms)")
    axis.set_yscale("log")
    axis.grid(alpha=0.25, which="both")
    axis.legend(fontsize=7, frameon=False)
    axis.set_title("latency / throughput, the knee of each configuration starred", fontsize=10)
    return figure


def concurrency_curves(points: pd.DataFrame) -> Figure | None:
    """Return throughput and p50/p99 latency against the number of closed-loop clients, per configuration.

    Expects columns precision, max_batch_size, load_level (clients), throughput_rps, p50_ms, p99_ms.
    """
    needed = {"precision", "max_batch_size", "load_level", "throughput_rps", "p50_ms", "p99_ms"}
    if points.empty or not needed <= set(points.columns):
        return None
    data = points.dropna(subset=["throughput_rps"])
    if data.empty:
        return None
    figure, (top, bottom) = _figure(7.8, 5.0, rows=2)
    for index, ((precision, batch), rows) in enumerate(data.groupby(["precision", "max_batch_size"])):
        rows = rows.sort_values("load_level")
        colour = PALETTE[index % len(PALETTE)]
        label = f"{precision}, batch {int(batch)}"
        top.plot(rows["load_level"], rows["throughput_rps"], marker="o", color=colour, linewidth=1, label=label)
        bottom.plot(rows["load_level"], rows["p99_ms"], marker="o", color=colour, linewidth=1)
        bottom.plot(rows["load_level"], rows["p50_ms"], marker=".", color=colour, linewidth=1, linestyle="--")
    top.set_ylabel("throughput (req/s)")
    bottom.set_ylabel("latency (ms; solid p99, dashed p50)")
    bottom.set_xlabel("concurrency (closed-loop clients)")
    for axis in (top, bottom):
        axis.set_xscale("log", base=2)
        axis.grid(alpha=0.25, which="both")
    bottom.set_yscale("log")
    top.legend(fontsize=7, frameon=False)
    top.set_title("throughput and latency against concurrency", fontsize=10)
    return figure


def _bound_label(value: float, bound: Any) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        return "n/a"
    return f"{value:.0f}" if bound in (None, "exact") else f"≥{value:.0f}"


def batch_effect(rates: pd.DataFrame) -> Figure | None:
    """Return each configuration's max rate under the SLO by max_batch_size, one bar group per precision.

    Expects columns precision, max_batch_size, max_rate_rps and optionally bound (a lower bound is
    hatched and labelled "≥") and high_rps (the lowest failing rate: drawn as the bar's reach).
    """
    needed = {"precision", "max_batch_size", "max_rate_rps"}
    if rates.empty or not needed <= set(rates.columns):
        return None
    precisions = sorted(rates["precision"].unique())
    batches = sorted(rates["max_batch_size"].unique())
    width = 0.8 / max(1, len(precisions))
    figure, (axis,) = _figure(7.5, 3.6)
    for p_index, precision in enumerate(precisions):
        rows = rates[rates["precision"] == precision].set_index("max_batch_size")
        x = np.arange(len(batches)) + p_index * width
        labelled = False
        for xi, batch in zip(x, batches):
            if batch not in rows.index:
                continue
            row = rows.loc[batch]
            value = float(row["max_rate_rps"]) if row["max_rate_rps"] is not None else math.nan
            bound = row.get("bound") if "bound" in rows.columns else None
            lower = bound not in (None, "exact") and not (isinstance(bound, float) and math.isnan(bound))
            bar = axis.bar([xi], [0.0 if math.isnan(value) else value], width=width, color=PALETTE[p_index % len(PALETTE)],
                           hatch="//" if lower else None, edgecolor="white" if lower else None,
                           label=None if labelled else precision)[0]
            labelled = True
            high = row.get("high_rps") if "high_rps" in rows.columns else None
            if lower and isinstance(high, (int, float)) and math.isfinite(high) and high > value:
                axis.plot([xi, xi], [value, high], color=NEUTRAL, linewidth=1)  # the truth lies below the lowest failure
                axis.plot([xi - width / 4, xi + width / 4], [high, high], color=NEUTRAL, linewidth=1)
            axis.annotate(_bound_label(value, bound if lower else "exact"),
                          (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
    axis.set_xticks(np.arange(len(batches)) + width * (len(precisions) - 1) / 2, [f"batch {int(b)}" for b in batches])
    axis.set_ylabel("max req/s under the p99 SLO")
    axis.grid(alpha=0.25, axis="y")
    axis.legend(fontsize=7, frameon=False)
    axis.set_title("batching and precision effect (hatched: at least; whisker: lowest failing rate)", fontsize=10)
    return figure


def capacity_chart(measured: Sequence[Mapping[str, Any]], per_replica_rps: float | None,
                   target_rps: float | None = None) -> Figure | None:
    """Return measured max rate per replica count against the linear prediction.

    ``measured`` rows need ``replicas`` and ``measured_rps``; a row whose ``search`` did not
    converge (or ``converged`` False) is a lower bound: hatched and labelled "≥".
    """
    rows = [r for r in measured if isinstance(r.get("measured_rps"), (int, float))]
    if not rows:
        return None
    figure, (axis,) = _figure(6.5, 3.6)
    for index, row in enumerate(rows):
        converged = (row.get("search") or {}).get("converged", row.get("converged", True))
        value = float(row["measured_rps"])
        bar = axis.bar([int(row["replicas"])], [value], width=0.5, color=ACCENT, hatch=None if converged else "//",
                       edgecolor=None if converged else "white",
                       label="measured max rate under SLO" if index == 0 else None)[0]
        axis.annotate(_bound_label(value, "exact" if converged else "at least"),
                      (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
    replicas = [int(r["replicas"]) for r in rows]
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
    axis.set_title("capacity: measured vs linear model (hatched: at least)", fontsize=10)
    return figure
