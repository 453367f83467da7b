"""Report sections of performance: a load run, a sweep (rebuilt from ``sweep.csv`` and what
``sweep_summary.json`` saved) and a capacity plan with its check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.jsonfile import read_json
from harness.measure.load_verdict import MET, LoadVerdict, judge_saved_load
from harness.report import charts, frames
from harness.report.section import Section, add_figure, add_telemetry, fmt
from harness.report.tokens_over_time import add_load_tokens_over_time
from harness.slo import Slo

__all__ = ["load_section", "load_verdict", "load_tokens", "sweep_section", "capacity_section", "max_rate_section"]


def load_section(directory: Path, result: dict[str, Any], root: Path) -> Section:
    profile = result.get("profile", "profile")
    if isinstance(profile, dict):  # a full LoadProfile: name it by its kind, users and duration
        profile = f"{profile.get('kind', '?')} ({profile.get('users', '?')} users, {fmt(profile.get('duration_s'), 0)} s)"
    where = result.get("topology") or result.get("endpoint") or "?"  # an endpoint measured as it is has no topology
    section = Section("load", f"Load: {profile} on {where}",
                      str(directory.relative_to(root)))
    section.paragraphs.append(
        f"{result.get('requests', 'n/a')} requests, {fmt(result.get('throughput_rps'))} req/s, p50 {fmt(result.get('p50_ms'))} ms, p95 "
        f"{fmt(result.get('p95_ms'))} ms, p99 {fmt(result.get('p99_ms'))} ms (exact, from every request); "
        f"errors: {result.get('errors', result.get('error_count', 'n/a'))}."
        + (f" The load generator was saturated ({_generator_why(result)}): latencies include generator delay."
           if result.get("generator_saturated") else "")
    )
    tokens = load_tokens(directory)
    if tokens is not None:
        section.paragraphs.append(_tokens_paragraph(tokens))
    verdict = load_verdict(directory, result)
    section.paragraphs.append(f"Verdict: {verdict.line()}.")
    if not result.get("requests"):
        section.failed = True
        section.findings.append("no request was recorded: the load generator wrote no records")
    elif verdict.outcome != MET:
        section.failed, section.inconclusive = verdict.failed, not verdict.failed
        section.findings += [f"{verdict.criteria} {verdict.outcome}: {reason}" for reason in verdict.reasons]
    if result.get("generator_saturated"):
        processes = (result.get("generator") or {}).get("workers") or 1
        section.findings.append(f"load generator saturated ({_generator_why(result)}, from {processes} process(es)): the "
                                "figures are a lower bound on what the service can do; more generator processes "
                                "(harness load --load-workers N) would lift it")
    requests = frames.read_requests(directory / "requests.csv")
    add_figure(section, "throughput and latency per second", charts.load_over_time(frames.latency_over_time(requests)))
    if tokens is not None:
        add_load_tokens_over_time(section, directory)
    add_telemetry(section, directory)
    section.summary = {k: result.get(k) for k in ("requests", "errors", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "generator_saturated")}
    section.summary["verdict"] = verdict.to_dict()
    if tokens is not None:
        section.summary["tokens"] = tokens
    return section


def _generator_why(result: dict[str, Any]) -> str:
    """Return why the load generator was saturated, as its run recorded it (result.json's ``generator``)."""
    return (result.get("generator") or {}).get("saturated_why") or "CPU above 90% of a core"


def load_tokens(directory: Path) -> dict[str, Any] | None:
    """Return a generative load's token figures rebuilt from its requests.csv (`harness.measure.tokens`,
    under the SLO and token SLO its run.json recorded), None for a load whose records carry no tokens."""
    from harness.measure.tokens import has_tokens, summarize_tokens
    from harness.request_records import REQUESTS_FILE, RequestRecord, read_records
    from harness.results import RUN_FILE, load_run
    from harness.slo import TokenSlo

    path = directory / REQUESTS_FILE
    records = list(read_records(path, RequestRecord)) if path.exists() else []
    if not has_tokens(records):
        return None
    config = load_run(directory).config if (directory / RUN_FILE).exists() else {}
    slo = Slo.from_mapping(config.get("slo") if isinstance(config.get("slo"), dict) else None)
    bounds = config.get("token_slo") if isinstance(config.get("token_slo"), dict) else {}
    return summarize_tokens(records, slo, TokenSlo(**bounds)).to_dict()


def _tokens_paragraph(tokens: dict[str, Any]) -> str:
    bounds = ", ".join(f"{k.removesuffix('_ms')} <= {fmt(v)} ms" for k, v in tokens["bounds"].items() if v is not None)
    return (f"Tokens (exact, from every request; ITL over every gap of the successful requests): TTFT p50 "
            f"{fmt(tokens.get('ttft_p50_ms'))} / p99 {fmt(tokens.get('ttft_p99_ms'))} ms, TPOT p50 "
            f"{fmt(tokens.get('tpot_p50_ms'))} / p99 {fmt(tokens.get('tpot_p99_ms'))} ms, ITL p50 "
            f"{fmt(tokens.get('itl_p50_ms'))} / p99 {fmt(tokens.get('itl_p99_ms'))} ms; "
            f"{fmt(tokens.get('output_tokens_per_s'))} output tokens/s; goodput {fmt(tokens.get('goodput_rps'))} req/s "
            f"({tokens['good']} of {tokens['requests']} requests met {bounds}; a failed one never does).")


def load_verdict(directory: Path, result: dict[str, Any]) -> LoadVerdict:
    """Return a saved load's verdict, rebuilt by the one judgement (`harness.measure.load_verdict.judge_load`)
    from its result.json, the SLO and SLA tier its run.json recorded (the defaults for a load recorded
    without them) and, with a tier, the alerts of its telemetry.csv. A round of a load in rounds
    (``round-NN/``, no run.json of its own) is judged by its load's."""
    from harness.results import RUN_FILE, load_run

    recorded = next((d for d in (directory, directory.parent) if (d / RUN_FILE).exists()
                     and (d == directory or directory.name.startswith("round-"))), None)
    config = load_run(recorded).config if recorded is not None else {}
    slo = config.get("slo") if isinstance(config.get("slo"), dict) else None
    tier = config.get("tier") if isinstance(config.get("tier"), str) else None
    return judge_saved_load(directory, result, Slo.from_mapping(slo), tier=tier)


def _sweep_summary(directory: Path) -> dict[str, Any]:
    """Return the sweep summary rebuilt from saved data: ``sweep.csv`` plus the searches, accuracy and
    forward-pass timings saved in ``sweep_summary.json`` (effects recomputed, never copied)."""
    from harness.sweep.grid import read_sweep_csv
    from harness.sweep.summary import summarize_sweep

    saved_path = directory / "sweep_summary.json"
    saved = read_json(saved_path) if saved_path.exists() else {}
    saved = saved if isinstance(saved, dict) else {}
    slo = Slo.from_mapping(saved.get("slo") if isinstance(saved.get("slo"), dict) else None)
    rows = list(read_sweep_csv(directory / "sweep.csv"))
    summary = summarize_sweep(rows, p99_ms=slo.p99_ms, max_error_rate=slo.max_error_rate,
                              accuracy=[a for a in saved.get("accuracy") or [] if isinstance(a, dict) and "precision" in a],
                              searches=saved.get("searches") or {}, load_mode=saved.get("load_mode") or "rate")
    summary["windows"] = sum(1 for r in rows if r.get("status") == "ok")
    summary["notes"] = list(saved.get("notes") or [])
    return summary


def _rate_cell(figure: dict[str, Any] | None) -> str:
    return (figure or {}).get("text") or "n/a"


def _expected_cells(effect: dict[str, Any]) -> dict[str, Any]:
    said = effect.get("direction") or {}
    return {"direction: effect / forward": (f"{said['effect']} / {said['forward']}: "
                                            f"{'agree' if said.get('agree') else 'DISAGREE'}") if said else "n/a",
            "expected from the forward pass": _rate_cell(effect.get("expected_from_forward")),
            "effect / expected": _rate_cell(effect.get("effect_vs_expected")),
            "forward share of a request": effect.get("forward_share")}


def sweep_section(directory: Path, root: Path) -> Section:
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
    add_figure(section, "p99 latency against throughput per configuration: grid points and the search's probes, "
                "the knee (max rate under the SLO) starred", charts.frontier(pd.DataFrame(points), slo, knees=knees))
    if concurrency:
        add_figure(section, "throughput and latency against concurrency (closed-loop clients)",
                    charts.concurrency_curves(pd.DataFrame(summary["points"])))
    add_figure(section, "max rate under the p99 SLO by batch size and precision (hatched: a lower bound)",
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


def capacity_section(directory: Path, root: Path) -> Section:
    data = read_json(directory / "capacity.json")
    section = Section("capacity", "Capacity plan", str(directory.relative_to(root)))
    plan = data.get("plan", data)
    converged = plan.get("per_replica_converged", True)
    per_replica = plan.get("per_replica_text") or f"{fmt(plan.get('per_replica_rps'))} req/s"
    section.paragraphs.append(
        f"Target {fmt(plan.get('target_rps'))} req/s at p99 <= {fmt(plan.get('p99_ms'))} ms with headroom "
        f"{fmt(plan.get('headroom'), 2)}: {'at most ' if not converged else ''}{plan.get('replicas', 'n/a')} replicas "
        f"with one replica sustaining {per_replica}"
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
    cross = data.get("cross_check") or {}
    if cross.get("reference"):
        used = (cross.get("second") or cross.get("first") or {}).get("max_rate_rps")
        section.paragraphs.append(
            f"Cross-check: one replica {fmt(used)} req/s here, {fmt(cross['reference'].get('rate_rps'))} req/s in "
            f"{cross['reference'].get('source')}: {'agree' if cross.get('agrees') else 'DISAGREE'} ({cross.get('definition')}).")
        if not cross.get("agrees"):
            section.findings.append(f"one replica's max rate disagrees with the sweep's: {cross.get('note')}")
    add_figure(section, "measured max rate vs the linear model (hatched: a lower bound)",
                charts.capacity_chart(data.get("points") or [], plan.get("per_replica_rps"), plan.get("target_rps")))
    section.summary = {k: plan.get(k) for k in ("target_rps", "replicas", "per_replica_rps", "per_replica_converged",
                                                "per_replica_upper_rps", "fewest_replicas")}
    section.summary["per_replica"] = per_replica
    section.summary["linear_model_error"] = data.get("linear_model_error")
    section.summary["agrees_with_sweep"] = cross.get("agrees")
    return section


def max_rate_section(directory: Path, root: Path) -> Section:
    """The max-rate search of a spec's own deployment (``max_rate.json``): an LLM's max goodput rate, every probe."""
    data = read_json(directory / "max_rate.json")
    search = data.get("search") or {}
    o = data.get("objectives") or {}
    if data.get("generative"):
        title = "Max goodput rate"
        bounds = ", ".join(f"{k.removesuffix('_ms').upper()} <= {fmt(v)} ms" for k, v in o.items()
                           if k.endswith("_ms") and v is not None)
        share = fmt((data.get("good_share") or 0) * 100) + "% good" if data.get("good_share") is not None else "none good"
        sent = f" of {fmt(data['sent_rate_rps'])} sent" if data.get("sent_rate_rps") else ""
        answer = (f"{data.get('spec')} ({data.get('protocol')}): {data.get('max_rate_text')} with goodput "
                  f"{fmt(data.get('goodput_rps'))} good requests/s{sent} ({share}), a rate passing when at least "
                  f"{fmt((o.get('min_good_share') or 0) * 100, 0)}% of its requests are good under {bounds}.")
    else:
        title = "Max rate"
        answer = (f"{data.get('spec')} ({data.get('protocol')}): {data.get('max_rate_text')} under p99 <= "
                  f"{fmt(o.get('p99_ms'))} ms and errors <= {fmt((o.get('max_error_rate') or 0) * 100)}%.")
    section = Section("max-rate", title, str(directory.relative_to(root)))
    section.paragraphs.append(answer + f" The search: {search.get('stop_reason')}, {search.get('detail')}.")
    if not search.get("converged"):
        section.findings.append(f"the max rate is a lower bound: {search.get('detail')}")
    rows = []
    for probe in search.get("probes") or []:
        m = probe.get("measurement") or {}
        row = {"rate (rps)": probe.get("rate_rps"), "verdict": probe.get("verdict"),
               "throughput (rps)": m.get("throughput_rps"), "p99 (ms)": m.get("p99_ms"), "errors": m.get("error_rate")}
        if data.get("generative"):
            row.update({"good share": m.get("good_share"), "goodput (rps)": m.get("goodput_rps"),
                        "TTFT p99 (ms)": m.get("ttft_p99_ms"), "ITL p99 (ms)": m.get("itl_p99_ms")})
        rows.append(row)
    if rows:
        section.tables.append(("probes, in the order measured", rows))
    section.summary = {k: data.get(k) for k in ("max_rate_rps", "max_rate_text", "goodput_rps", "good_share", "protocol")}
    return section
