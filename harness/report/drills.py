"""The drills' part of a chaos report: replicas and traffic share over time, and the drills' own figures.

Rebuilt from saved data only: the platform's events (``Scheduled`` names a replica's revision;
``Ready``, ``NotReady`` and ``Exited`` its readiness; ``TrafficShifted`` the split between revisions;
``SuccessfulRescale`` and ``ScalingReplicaSet`` what the autoscaler and rollouts did), the per-request
records for the latency while it happened, and the drill activities' outputs in ``result.json``.
Frames are pure functions; `drill_timeline` is the figure; `drill_tables` the tables.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.platforms.base import DRILL_EVENT_TYPES, EXITED, NOT_READY, READY, SCHEDULED, SUCCESSFUL_RESCALE, TRAFFIC_SHIFTED
from harness.report import charts

__all__ = ["has_drill_events", "replica_timeline", "traffic_timeline", "scale_ups", "drill_timeline", "drill_tables"]


def has_drill_events(events: pd.DataFrame) -> bool:
    """Return True when the events record a rollout, a traffic split or a rescale (the panel has something to show)."""
    return not events.empty and bool(events["type"].isin(DRILL_EVENT_TYPES).any())


def _revision_of(events: pd.DataFrame) -> dict[str, int]:
    scheduled = events[events["type"] == SCHEDULED]
    column = scheduled["revision"] if "revision" in scheduled.columns else pd.Series(1, index=scheduled.index)
    return {str(name): int(rev) if pd.notna(rev) else 1 for name, rev in zip(scheduled["replica"], column)}


def replica_timeline(events: pd.DataFrame) -> pd.DataFrame:
    """Return the Ready replicas per revision after every readiness change: time_s, revision, ready_replicas."""
    columns = ["time_s", "revision", "ready_replicas"]
    if events.empty:
        return pd.DataFrame(columns=columns)
    revision = _revision_of(events)
    ready: dict[str, bool] = {}
    rows = []
    for _, event in events[events["type"].isin((READY, NOT_READY, EXITED))].iterrows():
        name = str(event["replica"])
        ready[name] = event["type"] == READY
        for rev in sorted(set(revision.values()) | {revision.get(name, 1)}):
            count = sum(1 for replica, up in ready.items() if up and revision.get(replica, 1) == rev)
            rows.append({"time_s": float(event["time_s"]), "revision": rev, "ready_replicas": count})
    return pd.DataFrame(rows, columns=columns)


def traffic_timeline(events: pd.DataFrame, replicas: pd.DataFrame) -> pd.DataFrame:
    """Return each revision's share of the traffic (percent) over time: time_s, revision, share_percent.

    Under a split (``TrafficShifted``) the share is the split's; without one, every Ready replica gets
    an equal part, so a revision's share is its part of the Ready replicas.
    """
    columns = ["time_s", "revision", "share_percent"]
    if replicas.empty:
        return pd.DataFrame(columns=columns)
    shifts = events[events["type"] == TRAFFIC_SHIFTED]
    moments = sorted(set(replicas["time_s"]) | set(shifts["time_s"]))
    revisions = sorted(set(replicas["revision"]))
    rows = []
    for moment in moments:
        earlier = shifts[shifts["time_s"] <= moment]
        weights = earlier.iloc[-1]["weights"] if not earlier.empty and isinstance(earlier.iloc[-1].get("weights"), dict) else {}
        current = replicas[replicas["time_s"] <= moment].groupby("revision")["ready_replicas"].last()
        total_ready = float(current.sum())
        for rev in revisions:
            if weights:
                share = float(weights.get(str(rev), 0)) if current.get(rev, 0) > 0 else 0.0
            else:
                share = 100.0 * current.get(rev, 0) / total_ready if total_ready else 0.0
            rows.append({"time_s": moment, "revision": rev, "share_percent": share})
    return pd.DataFrame(rows, columns=columns)


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def scale_ups(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Return one row per autoscaler decision: when, from and to how many replicas, why, and for a scale-up
    how long until the replicas it added were Ready (``ready_after_s``; the last of them)."""
    rows = []
    decisions = events[events["type"] == SUCCESSFUL_RESCALE]
    scaled = events[events["type"] == "ScalingReplicaSet"]
    for _, decision in decisions.iterrows():
        at = float(decision["time_s"])
        row = {"at_s": at, "from": _count(decision.get("from_replicas")), "to": _count(decision.get("replicas")),
               "metric": decision.get("metric"), "value": decision.get("value"), "target": decision.get("target"),
               "ready_after_s": None}
        follow = scaled[scaled["time_s"] >= at]
        names = follow.iloc[0].get("names") if not follow.empty else None
        if isinstance(names, list) and names and (row["to"] or 0) > (row["from"] or 0):
            ready = events[(events["type"] == READY) & (events["replica"].isin(names)) & (events["time_s"] >= at)]
            if ready["replica"].nunique() == len(names):
                row["ready_after_s"] = round(float(ready.groupby("replica")["time_s"].min().max()) - at, 3)
        rows.append(row)
    return rows


def drill_timeline(replicas: pd.DataFrame, traffic: pd.DataFrame, latency: pd.DataFrame, origin_s: float,
                   *, slo_latency_ms: float | None = None, window: tuple[float, float] | None = None,
                   title: str = "") -> Figure | None:
    """Return three panels over seconds from ``origin_s``: Ready replicas per revision, each revision's share
    of the traffic, and the requests' p50/p99 per second (`harness.report.frames.latency_over_time`).
    ``window`` (epoch seconds) clips the view to what was measured (not the teardown)."""
    if window is not None:
        replicas = replicas[replicas["time_s"] <= window[1]]
        traffic = traffic[traffic["time_s"] <= window[1]]
        latency = latency[(latency["t_s"] >= window[0]) & (latency["t_s"] <= window[1])] if not latency.empty else latency
    if replicas.empty:
        return None
    figure = Figure(figsize=(9.0, 5.6), layout="constrained")
    top, middle, bottom = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2, 2, 3]})
    end_s = window[1] if window is not None else float(max(replicas["time_s"].max(), traffic["time_s"].max()))

    def steps(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
        # a step holds its last value until the end of the view
        times = np.append(frame["time_s"].to_numpy(float), max(end_s, float(frame["time_s"].max()))) - origin_s
        return times, np.append(frame[column].to_numpy(float), float(frame[column].iloc[-1]))

    for index, (rev, group) in enumerate(replicas.groupby("revision")):
        colour = charts.PALETTE[index % len(charts.PALETTE)]
        top.step(*steps(group, "ready_replicas"), where="post", color=colour, label=f"revision {rev}")
        share = traffic[traffic["revision"] == rev]
        if not share.empty:
            middle.step(*steps(share, "share_percent"), where="post", color=colour, label=f"revision {rev}")
    top.set_ylabel("Ready replicas")
    top.yaxis.get_major_locator().set_params(integer=True)
    top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=7, ncols=4, frameon=False)
    middle.set_ylabel("traffic %")
    middle.set_ylim(-5, 105)
    if not latency.empty:
        t = latency["t_s"].to_numpy(float) - origin_s
        bottom.plot(t, latency["p50_ms"].to_numpy(float), color=charts.ACCENT, linewidth=1, label="p50")
        bottom.plot(t, latency["p99_ms"].to_numpy(float), color=charts.BAD, linewidth=1, label="p99")
        if slo_latency_ms is not None:
            bottom.axhline(slo_latency_ms, color=charts.NEUTRAL, linestyle=":", linewidth=1, label=f"SLO {slo_latency_ms:g} ms")
        bottom.legend(loc="upper right", fontsize=7, frameon=False)
    bottom.set_ylabel("request latency (ms)")
    bottom.set_xlabel("seconds from the drill's start")
    for axis in (top, middle, bottom):
        axis.axvline(0.0, color=charts.BAD, linewidth=1)
        axis.grid(alpha=0.25)
        if window is not None:
            axis.set_xlim(window[0] - origin_s, window[1] - origin_s)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure


def _share(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.1%}"


def _number(value: Any, digits: int = 1) -> str:
    return "n/a" if not isinstance(value, (int, float)) or not np.isfinite(value) else f"{value:.{digits}f}"


def drill_tables(result: Mapping[str, Any], events: pd.DataFrame) -> list[tuple[str, list[dict[str, Any]]]]:
    """Return (caption, rows) tables for the drills of a chaos result: rollouts, overload spikes, load steps,
    and the autoscaler's decisions with the time until the replicas it added were Ready."""
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    drills = [d for d in result.get("drills") or [] if isinstance(d, Mapping)]
    rollouts = [d for d in drills if d.get("drill") == "rollout"]
    if rollouts:
        rows = []
        for d in rollouts:
            analysis = d.get("analysis") or {}
            rows.append({"strategy": d.get("strategy"), "revision": f"{d.get('from_revision')} -> {d.get('revision')}",
                         "outcome": d.get("phase"), "took (s)": _number(d.get("duration_s")), "why": d.get("why") or "",
                         "canary requests": analysis.get("canary_requests", ""),
                         "canary failed": _share(analysis.get("canary_failed_share")) if analysis else "",
                         "of all requests": _share(analysis.get("share_of_all_failed_by_canary")) if analysis else ""})
        tables.append(("rollouts (canary: the share of its requests that failed or answered over the SLO)", rows))
    spikes = [d for d in drills if d.get("drill") == "overload"]
    if spikes:
        tables.append(("load spike: goodput and the p99 of what was admitted (harness.measure.overload)", [{
            "rate limit": (f"{d['rate_limit']['rate']:g}/s, burst {d['rate_limit']['burst']}" if d.get("rate_limit") else "none"),
            "offered (req/s)": _number(d.get("offered_rps")), "rejected 429": d.get("rejected"), "admitted": d.get("admitted"),
            "shed 503": d.get("shed_503"), "p99 admitted (ms)": _number(d.get("p99_admitted_ms"), 0),
            "goodput (req/s)": _number(d.get("goodput_rps")), "SLO (ms)": _number(d.get("slo_latency_ms"), 0),
        } for d in spikes]))
    for d in (d for d in drills if d.get("drill") == "step-load"):
        tables.append(("load steps and the replicas after each", [{
            "step": index, "rate (req/s)": _number(step.get("rate_rps")), "goodput (req/s)": _number(step.get("goodput_rps")),
            "p99 admitted (ms)": _number(step.get("p99_admitted_ms"), 0), "replicas after": step.get("replicas_after"),
        } for index, step in enumerate(d.get("steps") or [])]))
    decisions = scale_ups(events) if not events.empty else []
    if decisions:
        start = min(float(row["at_s"]) for row in decisions)
        tables.append(("autoscaler decisions (SuccessfulRescale) and the time until the added replicas were Ready", [{
            "at (s)": _number(row["at_s"] - start), "replicas": f"{row['from']} -> {row['to']}",
            "metric": f"{_number(row['value'])} vs target {row['target']:g} ({row['metric']})" if isinstance(row["target"], (int, float)) else "",
            "Ready after (s)": _number(row["ready_after_s"], 2),
        } for row in decisions]))
    return tables
