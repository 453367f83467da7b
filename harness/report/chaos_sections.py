"""Report sections of chaos: one chaos run (its verdict, budget burn, timeline, events, drills) and a
fault x topology matrix.

Built from the files a run saved (``result.json``, ``timeline.csv``, ``events.jsonl``,
``telemetry.csv``, ``matrix.csv``), never from a live run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report import charts, drills, frames
from harness.report.section import Section, add_figure, add_telemetry, fmt
from harness.report.tokens_over_time import add_tokens_over_time

__all__ = ["chaos_section", "matrix_section"]


def chaos_section(directory: Path, result: dict[str, Any], root: Path) -> Section:
    name = f"{result.get('experiment', directory.name)} on {result.get('topology', '?')}"
    section = Section("chaos", f"Chaos: {name}", str(directory.relative_to(root)))
    outcome = result.get("outcome") or ("met" if result.get("tier_met") else "not met")  # results before outcomes
    reasons = list(result.get("reasons") or result.get("violations") or [])
    section.failed = outcome not in ("met", "inconclusive", "skipped")  # skipped: a fault the target cannot take
    section.inconclusive = outcome == "inconclusive"
    section.findings = reasons if outcome != "met" else []
    if outcome == "skipped":  # nothing was measured: say why, and that is all
        section.paragraphs.append(f"Fault {result.get('fault', '?')} was not run: {'; '.join(reasons)}.")
        section.summary = {"experiment": result.get("experiment"), "fault": result.get("fault"),
                           "topology": result.get("topology"), "outcome": outcome, "reasons": reasons}
        return section
    section.paragraphs.append(_chaos_paragraph(result, outcome))
    section.tables.append(("latency before / during / after the fault", [{
        "": "p99 (ms)",
        "before": fmt(result.get("p99_ms_before")), "during": fmt(result.get("p99_ms_during")),
        "after": fmt(result.get("p99_ms_after")),
    }]))
    budget = _budget_rows(result)
    if budget:
        section.tables.append(("error budget per tier: one fault's cost, projected over the period", budget))
    checks = [{"alert": c.get("name"), "check": c.get("status"), "detail": c.get("message")}
              for c in result.get("alert_checks") or [] if isinstance(c, dict)]
    if checks:
        section.tables.append(("alert checks (expected alerts must fire; others must not)", checks))
    injected = result.get("injected_at_s", result.get("injected_at"))
    token_phases = None  # a generative load's TTFT and ITL by phase around the fault
    timeline = frames.read_timeline(directory / "timeline.csv")
    events = frames.read_events(directory / "events.jsonl")
    if isinstance(injected, (int, float)):
        window = _measured_window(timeline, float(injected), result)
        add_figure(section, "client-side prober: latency, failures and platform events around the fault",
                    charts.chaos_timeline(timeline, events, float(injected), recovered_at_s=result.get("recovered_at_s"),
                                          slo_latency_ms=result.get("slo_latency_ms"), window=window, title=name))
        token_phases = add_tokens_over_time(section, directory, result, float(injected), window, title=name)
        if drills.has_drill_events(events) or result.get("drills"):
            _drill_parts(section, directory, result, events, float(injected), name, window)
        if not events.empty:
            shown = events[(events["time_s"] >= window[0]) & (events["time_s"] <= window[1])]
            section.tables.append(("platform events in the measured window (repeats folded)",
                                   _folded_events(shown, float(injected))))
        add_telemetry(section, directory, float(injected))
    budget_summary = result.get("budget") or {}
    section.summary = {k: result.get(k) for k in ("experiment", "fault", "topology", "outcome", "ttr_s", "outage_s",
                                                  "unavailability_s", "failed_requests", "total_requests", "availability",
                                                  "tier", "tier_met", "highest_tier_met")}
    section.summary.update(outcome=outcome, reasons=reasons, projected_burn=budget_summary.get("projected_burn"))
    if token_phases:
        section.summary["token_phases"] = token_phases
    return section


def _drill_parts(section: Section, directory: Path, result: dict[str, Any], events: pd.DataFrame, origin_s: float,
                 title: str, window: tuple[float, float]) -> None:
    """Add a drill's tables and, when the events changed replicas or traffic, its panel: Ready replicas and
    traffic share per revision, and latency."""
    section.tables.extend(drills.drill_tables(result, events))
    if not drills.has_drill_events(events):
        return
    replicas = drills.replica_timeline(events)
    latency = frames.latency_over_time(frames.read_requests(directory / "requests.csv"))
    add_figure(section, "replicas, traffic share per revision and request latency during the drill",
                drills.drill_timeline(replicas, drills.traffic_timeline(events, replicas), latency, origin_s,
                                      slo_latency_ms=result.get("slo_latency_ms"), window=window, title=title))


def _chaos_paragraph(result: dict[str, Any], outcome: str) -> str:
    """Return the cell's story: what clients saw (both outage figures), the cost against the budget, the verdict."""
    budget = result.get("budget") or {}
    text = (f"Fault {result.get('fault', '?')} injected into topology {result.get('topology', '?')}: clients saw a "
            f"client-side outage of {fmt(result.get('outage_s'), 2)} s (requests by send time that failed or answered "
            f"over the {fmt(result.get('slo_latency_ms'), 0)} ms SLO) and went "
            f"{'at least ' if result.get('unavailability_open') else ''}{fmt(result.get('unavailability_s'), 2)} s "
            f"without any successful answer (unavailability); time to recover {fmt(result.get('ttr_s'), 2)} s; "
            f"{result.get('failed_requests', 'n/a')} of {result.get('total_requests', 'n/a')} requests failed.")
    burn = budget.get("projected_burn")
    if burn is not None:
        text += (f" Expected {fmt(budget.get('faults_per_period'), 0)} times per period, such faults would burn "
                 f"{burn:.2%} (95% up to {budget.get('projected_burn_high', 0):.2%}) of {result.get('tier')}'s "
                 f"{_budget_text(budget.get('error_budget_s'))} error budget.")
    text += f" Verdict for {result.get('tier') or 'n/a'}: {outcome}"
    reasons = list(result.get("reasons") or [])
    text += f" ({reasons[0]})." if outcome != "met" and reasons else "."
    detected = [c.get("message") for c in result.get("alert_checks") or [] if isinstance(c, dict) and c.get("status") == "detected"]
    if detected:
        text += " " + " ".join(f"{m[0].upper()}{m[1:]}." for m in detected)
    return text


def _budget_text(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "n/a"
    return f"{seconds / 3600:g} h" if seconds >= 3600 else (f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.3g} s")


def _budget_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one row per tier and view: cost, projected burn with its interval, and the tier's outcome."""
    tiers = ((result.get("verdict") or {}).get("tiers") or {}) if isinstance(result.get("verdict"), dict) else {}
    rows = []
    for name, judgement in tiers.items():
        for burn in judgement.get("burns") or []:
            rows.append({
                "tier": name, "view": burn.get("view"), "cost per fault (s)": fmt(burn.get("cost_s"), 2),
                "faults per period": fmt(judgement.get("faults_per_period"), 0),
                "error budget": _budget_text(judgement.get("error_budget_s")),
                "projected burn": f"{burn.get('projected', 0):.2%} ({burn.get('projected_low', 0):.2%}-"
                                  f"{burn.get('projected_high', 0):.2%})",
                "max recovery (s)": fmt(judgement.get("max_recovery_s"), 0), "outcome": judgement.get("outcome"),
            })
    return rows


def _measured_window(timeline: pd.DataFrame, injected_s: float, result: dict[str, Any]) -> tuple[float, float]:
    """Return (start, end) epoch seconds of what the experiment measured: from the first successful
    probe (the deployment is up) to the end of the recovery analysis window (before teardown)."""
    start, end = injected_s - 30.0, injected_s + 3600.0
    if not timeline.empty:
        ok = timeline[timeline["ok"]]
        start = float(ok["t_s"].min()) if not ok.empty else float(timeline["t_s"].min())
        end = float(timeline["t_s"].max())
    recovery = result.get("recovery") if isinstance(result.get("recovery"), dict) else {}
    window_end = recovery.get("window_end_s") or result.get("window_end_s")
    if isinstance(window_end, (int, float)):
        end = min(end, float(window_end))
    return min(start, injected_s), max(end, injected_s)


def _folded_events(events: pd.DataFrame, injected_s: float) -> list[dict[str, Any]]:
    """Return event rows with runs of the same (type, replica, detail) folded into one row with a count."""
    rows: list[dict[str, Any]] = []
    for event in events.itertuples():
        detail = event.message if isinstance(event.message, str) and event.message else (event.reason or "")
        detail = detail if isinstance(detail, str) else ""
        key = (event.type, event.replica, detail)
        if rows and rows[-1]["_key"] == key:
            rows[-1]["count"] += 1
            rows[-1]["until (s)"] = f"{event.time_s - injected_s:+.2f}"
            continue
        rows.append({"_key": key, "t (s)": f"{event.time_s - injected_s:+.2f}", "until (s)": "", "count": 1,
                     "type": event.type, "replica": event.replica, "detail": detail})
    return [{k: v for k, v in row.items() if k != "_key"} for row in rows]


def _percent(value: Any) -> float | None:
    return None if value is None else float(value) * 100.0


def matrix_section(directory: Path, root: Path) -> Section:
    matrix = frames.read_csv_frame(directory / "matrix.csv")
    section = Section("matrix", "Resilience matrix: fault x topology", str(directory.relative_to(root)))
    rows = matrix.to_dict("records")
    section.tables.append(("fault x topology", [_matrix_row(row) for row in rows]))
    outcomes = [_row_outcome(row) for row in rows]
    failed = [row for row, outcome in zip(rows, outcomes) if outcome not in ("met", "inconclusive", "skipped")]
    unsure = [row for row, outcome in zip(rows, outcomes) if outcome == "inconclusive"]
    skipped = [row for row, outcome in zip(rows, outcomes) if outcome == "skipped"]  # what the target cannot take
    section.failed = bool(failed)
    section.inconclusive = bool(unsure) and not failed
    section.findings = [f"{r.get('fault')} on {r.get('topology')}: {_text_or(r.get('error')) or _text_or(r.get('reason')) or 'not met'}"
                        for r in failed]
    section.findings += [f"{r.get('fault')} on {r.get('topology')}: inconclusive: {_text_or(r.get('reason'))}" for r in unsure]
    section.findings += [f"{r.get('fault')} on {r.get('topology')}: {_text_or(r.get('reason'))}" for r in skipped]
    section.paragraphs.append(
        f"{len(rows)} cells: {outcomes.count('met')} met, {len(failed)} not met, {len(unsure)} inconclusive"
        f"{f', {len(skipped)} skipped' if skipped else ''}. Each cell "
        "is one chaos run under load. It is judged on the fault's cost (client-side outage and failed requests, each "
        "with a 95% interval), projected over the period at the expected rate of that fault, against the tier's error "
        "budget; on its time to recover against the tier's maximum; and on the alerts the fault should raise."
    )
    section.summary = {"cells": len(rows), "failed_cells": len(failed), "inconclusive_cells": len(unsure),
                       "met_cells": outcomes.count("met")}
    return section


def _text_or(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _row_outcome(row: dict[str, Any]) -> str:
    if _text_or(row.get("error")):
        return "error"
    outcome = _text_or(row.get("outcome"))
    if outcome:
        return outcome
    return "met" if str(row.get("tier_met")).lower() in ("true", "1", "1.0") else "not met"


def _matrix_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return a matrix cell as a readable table row (units in the headers, burn in percent)."""
    out = {"fault": row.get("fault"), "topology": row.get("topology")}
    if "retry" in row:
        out["retry"] = row.get("retry")
    burn = row.get("projected_burn")
    out.update({
        "TTR (s)": fmt(row.get("ttr_s"), 2),
        "client-side outage (s)": fmt(row.get("outage_s"), 2),
        "unavailability (s)": fmt(row.get("unavailability_s"), 2),
        "failed / total": f"{fmt(row.get('failed_requests'), 0)} / {fmt(row.get('total_requests'), 0)}",
        "projected burn": f"{burn:.2%}" if isinstance(burn, (int, float)) and not math.isnan(burn) else "n/a",
        "p99 during (ms)": fmt(row.get("p99_ms_during"), 0),
        "tier": row.get("tier"),
        "outcome": _row_outcome(row),
    })
    out["alerts detected (lead time)"] = _text_or(row.get("alerts_detected")) or "-"
    if _text_or(row.get("error")):
        out["error"] = row.get("error")
    return out
