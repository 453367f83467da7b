"""Saved run directories -> report sections (title, text, tables, charts, findings).

`collect_sections(run_dir)` walks a run directory and recognises each part by the files it holds,
so a report can be rebuilt from any saved run (a whole `harness run`, or one `harness load`,
`harness chaos run`, `harness chaos matrix`, `harness sweep` or `harness capacity` output):

- ``result.json`` with an ``experiment`` key: one chaos run (timeline, events, telemetry beside it);
- ``matrix.csv``: a fault x topology matrix (its cells are chaos runs in sub-directories);
- ``result.json`` with ``throughput_rps``: a load run (requests, telemetry beside it);
- ``sweep.csv``: a sweep (``sweep_summary.json`` beside it when present);
- ``capacity.json``: a capacity plan and its check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from harness.jsonfile import read_json
from harness.report import charts, drills, frames

__all__ = ["Section", "collect_sections", "MAX_DEPTH"]

MAX_DEPTH = 4  # how deep the walk looks for parts below the run directory


@dataclass
class Section:
    """One part of a report; ``failed`` marks a part whose verdict is a failure."""

    kind: str
    title: str
    path: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    failed: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    inconclusive: bool = False  # the data could not support a verdict either way (not a failure)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _add_figure(section: Section, caption: str, figure) -> None:
    if figure is not None:
        section.figures.append((caption, charts.to_png(figure)))


def _telemetry(section: Section, directory: Path, origin_s: float | None = None) -> None:
    telemetry = frames.read_telemetry_frame(directory / "telemetry.csv")
    _add_figure(section, "CPU and memory per replica (GPU when present)", charts.telemetry_over_time(telemetry, origin_s))


def _chaos_section(directory: Path, result: dict[str, Any], root: Path) -> Section:
    name = f"{result.get('experiment', directory.name)} on {result.get('topology', '?')}"
    section = Section("chaos", f"Chaos: {name}", str(directory.relative_to(root)))
    outcome = result.get("outcome") or ("met" if result.get("tier_met") else "not met")  # results before outcomes
    reasons = list(result.get("reasons") or result.get("violations") or [])
    section.failed = outcome not in ("met", "inconclusive")
    section.inconclusive = outcome == "inconclusive"
    section.findings = reasons if outcome != "met" else []
    section.paragraphs.append(_chaos_paragraph(result, outcome))
    section.tables.append(("latency before / during / after the fault", [{
        "": "p99 (ms)",
        "before": _fmt(result.get("p99_ms_before")), "during": _fmt(result.get("p99_ms_during")),
        "after": _fmt(result.get("p99_ms_after")),
    }]))
    budget = _budget_rows(result)
    if budget:
        section.tables.append(("error budget per tier: one fault's cost, projected over the period", budget))
    checks = [{"alert": c.get("name"), "check": c.get("status"), "detail": c.get("message")}
              for c in result.get("alert_checks") or [] if isinstance(c, dict)]
    if checks:
        section.tables.append(("alert checks (expected alerts must fire; others must not)", checks))
    injected = result.get("injected_at_s", result.get("injected_at"))
    timeline = frames.read_timeline(directory / "timeline.csv")
    events = frames.read_events(directory / "events.jsonl")
    if isinstance(injected, (int, float)):
        window = _measured_window(timeline, float(injected), result)
        _add_figure(section, "client-side prober: latency, failures and platform events around the fault",
                    charts.chaos_timeline(timeline, events, float(injected), recovered_at_s=result.get("recovered_at_s"),
                                          slo_latency_ms=result.get("slo_latency_ms"), window=window, title=name))
        if drills.has_drill_events(events) or result.get("drills"):
            _drill_parts(section, directory, result, events, float(injected), name, window)
        if not events.empty:
            shown = events[(events["time_s"] >= window[0]) & (events["time_s"] <= window[1])]
            section.tables.append(("platform events in the measured window (repeats folded)",
                                   _folded_events(shown, float(injected))))
        _telemetry(section, directory, float(injected))
    budget_summary = result.get("budget") or {}
    section.summary = {k: result.get(k) for k in ("experiment", "fault", "topology", "outcome", "ttr_s", "outage_s",
                                                  "unavailability_s", "failed_requests", "total_requests", "availability",
                                                  "tier", "tier_met", "highest_tier_met")}
    section.summary.update(outcome=outcome, reasons=reasons, projected_burn=budget_summary.get("projected_burn"))
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
    _add_figure(section, "replicas, traffic share per revision and request latency during the drill",
                drills.drill_timeline(replicas, drills.traffic_timeline(events, replicas), latency, origin_s,
                                      slo_latency_ms=result.get("slo_latency_ms"), window=window, title=title))


def _chaos_paragraph(result: dict[str, Any], outcome: str) -> str:
    """Return the cell's story: what clients saw (both outage figures), the cost against the budget, the verdict."""
    budget = result.get("budget") or {}
    text = (f"Fault {result.get('fault', '?')} injected into topology {result.get('topology', '?')}: clients saw a "
            f"client-side outage of {_fmt(result.get('outage_s'), 2)} s (requests by send time that failed or answered "
            f"over the {_fmt(result.get('slo_latency_ms'), 0)} ms SLO) and went "
            f"{'at least ' if result.get('unavailability_open') else ''}{_fmt(result.get('unavailability_s'), 2)} s "
            f"without any successful answer (unavailability); time to recover {_fmt(result.get('ttr_s'), 2)} s; "
            f"{result.get('failed_requests', 'n/a')} of {result.get('total_requests', 'n/a')} requests failed.")
    burn = budget.get("projected_burn")
    if burn is not None:
        text += (f" Expected {_fmt(budget.get('faults_per_period'), 0)} times per period, such faults would burn "
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
                "tier": name, "view": burn.get("view"), "cost per fault (s)": _fmt(burn.get("cost_s"), 2),
                "faults per period": _fmt(judgement.get("faults_per_period"), 0),
                "error budget": _budget_text(judgement.get("error_budget_s")),
                "projected burn": f"{burn.get('projected', 0):.2%} ({burn.get('projected_low', 0):.2%}-"
                                  f"{burn.get('projected_high', 0):.2%})",
                "max recovery (s)": _fmt(judgement.get("max_recovery_s"), 0), "outcome": judgement.get("outcome"),
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


def _matrix_section(directory: Path, root: Path) -> Section:
    matrix = frames.read_csv_frame(directory / "matrix.csv")
    section = Section("matrix", "Resilience matrix: fault x topology", str(directory.relative_to(root)))
    rows = matrix.to_dict("records")
    section.tables.append(("fault x topology", [_matrix_row(row) for row in rows]))
    outcomes = [_row_outcome(row) for row in rows]
    failed = [row for row, outcome in zip(rows, outcomes) if outcome not in ("met", "inconclusive")]
    unsure = [row for row, outcome in zip(rows, outcomes) if outcome == "inconclusive"]
    section.failed = bool(failed)
    section.inconclusive = bool(unsure) and not failed
    section.findings = [f"{r.get('fault')} on {r.get('topology')}: {_text_or(r.get('error')) or _text_or(r.get('reason')) or 'not met'}"
                        for r in failed]
    section.findings += [f"{r.get('fault')} on {r.get('topology')}: inconclusive: {_text_or(r.get('reason'))}" for r in unsure]
    section.paragraphs.append(
        f"{len(rows)} cells: {outcomes.count('met')} met, {len(failed)} not met, {len(unsure)} inconclusive. Each cell "
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
        "TTR (s)": _fmt(row.get("ttr_s"), 2),
        "client-side outage (s)": _fmt(row.get("outage_s"), 2),
        "unavailability (s)": _fmt(row.get("unavailability_s"), 2),
        "failed / total": f"{_fmt(row.get('failed_requests'), 0)} / {_fmt(row.get('total_requests'), 0)}",
        "projected burn": f"{burn:.2%}" if isinstance(burn, (int, float)) and not math.isnan(burn) else "n/a",
        "p99 during (ms)": _fmt(row.get("p99_ms_during"), 0),
        "tier": row.get("tier"),
        "outcome": _row_outcome(row),
    })
    out["alerts detected (lead time)"] = _text_or(row.get("alerts_detected")) or "-"
    if _text_or(row.get("error")):
        out["error"] = row.get("error")
    return out


def _load_section(directory: Path, result: dict[str, Any], root: Path) -> Section:
    profile = result.get("profile", "profile")
    if isinstance(profile, dict):  # a full LoadProfile: name it by its kind, users and duration
        profile = f"{profile.get('kind', '?')} ({profile.get('users', '?')} users, {_fmt(profile.get('duration_s'), 0)} s)"
    section = Section("load", f"Load: {profile} on {result.get('topology', '?')}",
                      str(directory.relative_to(root)))
    section.paragraphs.append(
        f"{result.get('requests', 'n/a')} requests, {_fmt(result.get('throughput_rps'))} req/s, p50 {_fmt(result.get('p50_ms'))} ms, p95 "
        f"{_fmt(result.get('p95_ms'))} ms, p99 {_fmt(result.get('p99_ms'))} ms (exact, from every request); "
        f"errors: {result.get('errors', result.get('error_count', 'n/a'))}."
        + (" The load generator saturated its CPU: latencies include generator delay." if result.get("generator_saturated") else "")
    )
    if not result.get("requests"):
        section.failed = True
        section.findings.append("no request was recorded: the load generator wrote no records")
    if result.get("generator_saturated"):
        section.findings.append("load generator saturated (> 90% CPU): figures are a lower bound on what the service can do")
    requests = frames.read_requests(directory / "requests.csv")
    _add_figure(section, "throughput and latency per second", charts.load_over_time(frames.latency_over_time(requests)))
    _telemetry(section, directory)
    section.summary = {k: result.get(k) for k in ("requests", "errors", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "generator_saturated")}
    return section


def _sweep_summary(directory: Path) -> dict[str, Any]:
    """Return the sweep summary rebuilt from saved data: ``sweep.csv`` plus the searches, accuracy and
    forward-pass timings saved in ``sweep_summary.json`` (effects recomputed, never copied)."""
    from harness.sweep.grid import read_sweep_csv
    from harness.sweep.summary import summarize_sweep

    saved_path = directory / "sweep_summary.json"
    saved = read_json(saved_path) if saved_path.exists() else {}
    saved = saved if isinstance(saved, dict) else {}
    slo = saved.get("slo") or {}
    rows = list(read_sweep_csv(directory / "sweep.csv"))
    summary = summarize_sweep(rows, p99_ms=float(slo.get("p99_ms") or 500.0),
                              max_error_rate=float(slo.get("max_error_rate") or 0.01),
                              accuracy=[a for a in saved.get("accuracy") or [] if isinstance(a, dict) and "precision" in a],
                              searches=saved.get("searches") or {}, load_mode=saved.get("load_mode") or "rate")
    summary["windows"] = sum(1 for r in rows if r.get("status") == "ok")
    summary["notes"] = list(saved.get("notes") or [])
    return summary


def _rate_cell(figure: dict[str, Any] | None) -> str:
    return (figure or {}).get("text") or "n/a"


def _expected_cells(effect: dict[str, Any]) -> dict[str, Any]:
    return {"expected from the forward pass": _rate_cell(effect.get("expected_from_forward")),
            "effect / expected": _rate_cell(effect.get("effect_vs_expected")),
            "forward share of a request": effect.get("forward_share")}


def _sweep_section(directory: Path, root: Path) -> Section:
    summary = _sweep_summary(directory)
    concurrency = summary.get("load_mode") == "concurrency"
    section = Section("sweep", "Performance sweep: precision x batch size x " + ("concurrency" if concurrency else "load"),
                      str(directory.relative_to(root)))
    slo = summary["slo"]["p99_ms"]
    configs = summary["configurations"]
    effects = summary["effects"]
    probes = summary.get("probes") or []
    section.paragraphs.append(
        f"{summary['windows']} measurement windows at {len(summary['points'])} grid point(s) "
        f"({'closed-loop clients' if concurrency else 'open-loop request rates'}) and {len(probes)} search probe(s). "
        f"{effects['basis']} Points that could not finish in their time bound are listed, not dropped.")
    if configs:
        section.paragraphs.append("Max rate under p99 <= " + f"{slo:g} ms: " + "; ".join(
            f"{c['precision']} batch {c['max_batch_size']}: {_rate_cell(c['max_rate'])} req/s" for c in configs) + ".")
        section.tables.append((f"max rate under p99 <= {slo:g} ms per configuration", [{
            "precision": c["precision"], "batch": c["max_batch_size"], "max rate (req/s)": _rate_cell(c["max_rate"]),
            "from": c["max_rate"].get("source"), "converged": bool(c["max_rate"].get("converged")),
            "highest pass (req/s)": c["max_rate"].get("low"), "lowest fail (req/s)": c["max_rate"].get("high"),
            "how": c["max_rate"].get("detail")} for c in configs]))
    if effects["batching"]:
        section.tables.append(("batching effect: max rate at the largest batch over the smallest, next to the forward "
                               "pass's per-sample speed-up measured in the same run", [{
            "precision": e["precision"], "batches": f"{e['large_batch']} vs {e['small_batch']}",
            "effect": _rate_cell(e["effect"]), "forward-pass speed-up": _rate_cell(e["forward_speedup"]),
            "effect / forward": _rate_cell(e["effect_vs_forward"]), **_expected_cells(e),
            "p50 speed-up at the same load": e.get("p50_speedup_at_same_load"), "same load (req/s)": e.get("same_load_rps"),
        } for e in effects["batching"]]))
    if effects["precision"]:
        section.tables.append(("precision effect: max rate against fp32's at the same batch, next to the forward "
                               "pass's speed-up measured in the same run and the accuracy drift", [{
            "precision": e["precision"], "batch": e["max_batch_size"], "effect": _rate_cell(e["effect"]),
            "forward-pass speed-up": _rate_cell(e["forward_speedup"]), "effect / forward": _rate_cell(e["effect_vs_forward"]),
            **_expected_cells(e),
            "p50 speed-up at the same load": e.get("p50_speedup_at_same_load"), "same load (req/s)": e.get("same_load_rps"),
            "max_abs_error": e.get("max_abs_error"), "max_rel_error": e.get("max_rel_error"),
            "top1_agreement": e.get("top1_agreement"),
        } for e in effects["precision"]]))
    if summary["points"]:
        level = "clients" if concurrency else "rate (req/s)"
        section.tables.append(("grid points (medians over windows)", [{
            "precision": p["precision"], "batch": p["max_batch_size"], level: p["load_level"], "windows": p["windows"],
            "throughput (req/s)": p["throughput_rps"], "p50 (ms)": p["p50_ms"], "p99 (ms)": p["p99_ms"],
            "error_rate": p["error_rate"], "cpu (%)": p["cpu_percent"], "rss (MB)": p["rss_mb"],
            "meets SLO": p["meets_slo"], "status": p["status"]} for p in summary["points"]]))
    if probes:
        section.tables.append(("search probes (the rates each search chose, in order)", [{
            "precision": p["precision"], "batch": p["max_batch_size"], "rate (req/s)": p["rate_rps"],
            "throughput (req/s)": p["throughput_rps"], "p99 (ms)": p["p99_ms"], "error_rate": p["error_rate"],
            "verdict": p["verdict"], "why": p["slo_verdict"]} for p in probes]))
    accuracy = [a for a in summary.get("accuracy") or [] if isinstance(a, dict)]
    if accuracy:
        batches = sorted({int(b) for a in accuracy for b in (a.get("forward_ms_by_batch") or {})})
        section.tables.append(("accuracy drift against fp32 on the same inputs, and the forward pass timed per batch size", [{
            **{k: v for k, v in _flat_row(a).items() if k not in ("forward_ms", "forward_reason")},
            **{f"forward at batch {b} (ms)": (a.get("forward_ms_by_batch") or {}).get(str(b)) for b in batches},
        } for a in accuracy]))
    points = [p for p in summary["points"] if p["windows"]] + probes
    knees = [{"precision": c["precision"], "max_batch_size": c["max_batch_size"], **c["max_rate"]} for c in configs]
    _add_figure(section, "p99 latency against throughput per configuration: grid points and the search's probes, "
                "the knee (max rate under the SLO) starred", charts.frontier(pd.DataFrame(points), slo, knees=knees))
    if concurrency:
        _add_figure(section, "throughput and latency against concurrency (closed-loop clients)",
                    charts.concurrency_curves(pd.DataFrame(summary["points"])))
    _add_figure(section, "max rate under the p99 SLO by batch size and precision (hatched: a lower bound)",
                charts.batch_effect(pd.DataFrame([{"precision": k["precision"], "max_batch_size": k["max_batch_size"],
                                                   "max_rate_rps": k.get("value"), "bound": k.get("bound"),
                                                   "high_rps": k.get("high")} for k in knees])))
    for point in summary["points"]:
        if point["status"] != "ok":
            section.findings.append(f"{point['precision']} batch {point['max_batch_size']}: {point['status']}"
                                    f" ({point.get('reason', '')})")
    for config in configs:
        if config["max_rate"].get("bound") != "exact":
            section.findings.append(f"{config['precision']} batch {config['max_batch_size']}: max rate "
                                    f"{_rate_cell(config['max_rate'])} req/s is a bound ({config['max_rate'].get('detail')})")
    section.findings += summary["notes"]
    section.summary = {
        "windows": summary["windows"], "probes": len(probes),
        "max_rates": {f"{c['precision']}/{c['max_batch_size']}": c["max_rate"] for c in configs},
        "effects": {
            "batching": {f"{e['precision']} batch {e['large_batch']} vs {e['small_batch']}":
                         {k: e[k] for k in _EFFECT_KEYS} for e in effects["batching"]},
            "precision": {f"{e['precision']} vs fp32 at batch {e['max_batch_size']}":
                          {k: e[k] for k in _EFFECT_KEYS} for e in effects["precision"]},
        },
    }
    return section


_EFFECT_KEYS = ("effect", "forward_speedup", "effect_vs_forward", "expected_from_forward", "effect_vs_expected")


def _flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return a table row with nested values dropped (tables show scalars; the JSON keeps the rest)."""
    return {k: v for k, v in row.items() if not isinstance(v, (dict, list))}


def _capacity_section(directory: Path, root: Path) -> Section:
    data = read_json(directory / "capacity.json")
    section = Section("capacity", "Capacity plan", str(directory.relative_to(root)))
    plan = data.get("plan", data)
    converged = plan.get("per_replica_converged", True)
    per_replica = plan.get("per_replica_text") or f"{_fmt(plan.get('per_replica_rps'))} req/s"
    section.paragraphs.append(
        f"Target {_fmt(plan.get('target_rps'))} req/s at p99 <= {_fmt(plan.get('p99_ms'))} ms with headroom "
        f"{_fmt(plan.get('headroom'), 2)}: {'at most ' if not converged else ''}{plan.get('replicas', 'n/a')} replicas "
        f"at a measured {per_replica} per replica"
        + ("" if converged else " (a lower bound: the search did not converge)") + f". {plan.get('assumption', '')}"
    )
    if plan.get("bound_note"):
        section.paragraphs.append(f"How far off the plan may be: {plan['bound_note']}.")
        section.findings.append(f"per-replica rate is a lower bound: {plan['bound_note']}")
    check = [{"replicas": p.get("replicas"), "predicted (req/s)": p.get("predicted_rps"),
              "measured (req/s)": p.get("measured") or p.get("measured_rps"), "measured / predicted": p.get("ratio"),
              "converged": (p.get("search") or {}).get("converged", p.get("converged")),
              "search": f"{(p.get('search') or {}).get('stop_reason', '-')}, {(p.get('search') or {}).get('probe_count', '-')} probes"}
             for p in data.get("points") or []]
    if check:
        section.tables.append(("measured vs predicted", check))
    if data.get("note"):
        section.paragraphs.append(str(data["note"]))
    _add_figure(section, "measured max rate vs the linear model (hatched: a lower bound)",
                charts.capacity_chart(data.get("points") or [], plan.get("per_replica_rps"), plan.get("target_rps")))
    section.summary = {k: plan.get(k) for k in ("target_rps", "replicas", "per_replica_rps", "per_replica_converged",
                                                "per_replica_upper_rps", "fewest_replicas")}
    section.summary["per_replica"] = per_replica
    section.summary["linear_model_error"] = data.get("linear_model_error")
    return section


def _classify(directory: Path, root: Path) -> Section | None:
    result_path = directory / "result.json"
    result = read_json(result_path) if result_path.exists() else None
    if (directory / "matrix.csv").exists():
        return _matrix_section(directory, root)
    if isinstance(result, dict) and "experiment" in result:
        return _chaos_section(directory, result, root)
    if (directory / "sweep.csv").exists():
        return _sweep_section(directory, root)
    if (directory / "capacity.json").exists():
        return _capacity_section(directory, root)
    if isinstance(result, dict) and "throughput_rps" in result:
        return _load_section(directory, result, root)
    return None


_ORDER: dict[str, int] = {"load": 0, "matrix": 1, "chaos": 2, "sweep": 3, "capacity": 4}


def collect_sections(run_dir: str | Path, on_error: Callable[[Path, Exception], None] | None = None) -> list[Section]:
    """Return the report sections found under ``run_dir``, ordered load, matrix, chaos, sweep, capacity.

    A part whose files cannot be read is reported through ``on_error`` (and skipped) when given;
    otherwise the error propagates.
    """
    root = Path(run_dir)
    found: list[Section] = []
    stack = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        try:
            section = _classify(directory, root)
        except Exception as exc:  # one unreadable part must not hide the rest of the report
            if on_error is None:
                raise
            on_error(directory, exc)
            section = None
        if section is not None:
            found.append(section)
        if depth < MAX_DEPTH:
            stack.extend((child, depth + 1) for child in sorted(directory.iterdir(), reverse=True) if child.is_dir())
    return sorted(found, key=lambda s: (_ORDER.get(s.kind, 9), s.path))


def frame_of(section: Section, index: int = 0) -> pd.DataFrame:
    """Return a section's table as a DataFrame (for tests and Markdown rendering)."""
    return pd.DataFrame(section.tables[index][1])
