"""Plain-text renderings of sweep and capacity results for people (terminal, closing notes).

Pure functions over the saved summaries (``sweep_summary.json``, ``capacity.json``), so a table
printed live and one rebuilt later from disk are the same.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

__all__ = ["format_table", "format_sweep", "format_capacity", "format_progress", "format_probe", "format_duration"]


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return an aligned text table (right-aligned numbers, left-aligned text)."""
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else _fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(r[i]) for r in rows) and bool(rows) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or value is None


def format_duration(seconds: float) -> str:
    """Return seconds as m:ss (or h:mm:ss); '-' when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_progress(done: int, total: int, label: str, status: str, windows: Sequence[Any], reason: str,
                    elapsed_s: float, eta_s: float) -> str:
    """Return one progress line for a finished point."""
    text = f"[{done}/{total}] {label}: {status}"
    if windows:
        thr = sorted(w.throughput_rps for w in windows)[len(windows) // 2]
        p99 = sorted(w.p99_ms for w in windows)[len(windows) // 2]
        text += f", {thr:.1f} rps, p99 {p99:.0f} ms, {len(windows)} window(s)"
    if reason and (status != "ok" or reason.startswith("stopped early")):
        text += f" ({reason})"
    return text + f"  elapsed {format_duration(elapsed_s)}, ETA {format_duration(eta_s)}"


def format_probe(precision: str, batch: int, probe: Any) -> str:
    """Return one progress line for a search probe (a `harness.sweep.search.Probe`)."""
    m = probe.measurement
    return (f"{precision} batch={batch} search probe {probe.rate_rps:.1f} rps: {probe.verdict} "
            f"({probe.reason}; {m.windows} window(s))")


def _figure(data: Mapping[str, Any] | None) -> str:
    return str((data or {}).get("text") or "-")


def format_sweep(summary: Mapping[str, Any]) -> str:
    """Return the sweep's point table, max rates, batching and precision effects, and accuracy drift as text."""
    slo = summary.get("slo", {}).get("p99_ms")
    concurrency = summary.get("load_mode") == "concurrency"
    rows = []
    for p in summary.get("points", []):
        thr_ci = p.get("throughput_rps_ci") or [None, None]
        rows.append([p["precision"], p["max_batch_size"], p["load_level"], p["windows"], p.get("throughput_rps"),
                     f"[{_fmt(thr_ci[0])}, {_fmt(thr_ci[1])}]", p.get("p50_ms"), p.get("p95_ms"), p.get("p99_ms"),
                     p.get("error_rate"), p.get("cpu_percent"), p.get("rss_mb"), p.get("meets_slo"), p["status"]])
    out = []
    if rows:
        out.append(format_table(["precision", "batch", "clients" if concurrency else "rate_rps", "windows",
                                 "throughput_rps", "95% CI", "p50_ms", "p95_ms", "p99_ms", "error_rate", "cpu_percent",
                                 "rss_mb", f"p99<={_fmt(slo, 0)}ms", "status"], rows))
    configs = summary.get("configurations", [])
    if configs:
        out += [""] if out else []
        out.append(f"max rate under p99 <= {_fmt(slo, 0)} ms per configuration "
                   "(search; 'at least' where it did not converge or only the grid bounds it):")
        out.append(format_table(["precision", "batch", "max_rate_rps", "from", "detail"], [
            [c["precision"], c["max_batch_size"], _figure(c.get("max_rate")), (c.get("max_rate") or {}).get("source", "-"),
             (c.get("max_rate") or {}).get("detail", "")] for c in configs]))
    effects = summary.get("effects", {})
    if effects.get("batching"):
        out += ["", "batching (max rate at the largest batch / the smallest; forward pass: per-sample speed-up; "
                "expected: the service-level effect the forward pass predicts):"]
        out.append(format_table(["precision", "batches", "effect", "forward_speedup", "effect/forward",
                                 "expected", "effect/expected", "same_load_rps", "p50_speedup"], [
            [e["precision"], f"{e['large_batch']} vs {e['small_batch']}", _figure(e.get("effect")),
             _figure(e.get("forward_speedup")), _figure(e.get("effect_vs_forward")), _figure(e.get("expected_from_forward")),
             _figure(e.get("effect_vs_expected")), e.get("same_load_rps"), _fmt(e.get("p50_speedup_at_same_load"), 2)]
            for e in effects["batching"]]))
    if effects.get("precision"):
        out += ["", "precision (max rate against fp32's at the same batch; accuracy on the same seeded inputs):"]
        out.append(format_table(
            ["precision", "batch", "effect", "forward_speedup", "effect/forward", "expected", "effect/expected",
             "p50_speedup", "max_abs_error", "mean_abs_error", "max_rel_error", "top1_agreement"],
            [[e["precision"], e["max_batch_size"], _figure(e.get("effect")), _figure(e.get("forward_speedup")),
              _figure(e.get("effect_vs_forward")), _figure(e.get("expected_from_forward")),
              _figure(e.get("effect_vs_expected")), _fmt(e.get("p50_speedup_at_same_load"), 2), _sci(e.get("max_abs_error")),
              _sci(e.get("mean_abs_error")), _sci(e.get("max_rel_error")), _fmt(e.get("top1_agreement"), 3)]
             for e in effects["precision"]]))
    return "\n".join(out)


def _sci(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.2e}"


def format_capacity(data: Mapping[str, Any]) -> str:
    """Return the capacity plan, its assumption and the measured-vs-predicted check as text.

    The first line says whether the per-replica rate is exact or a lower bound (then the plan is an
    upper bound, and the range of replica counts the search's bracket allows follows).
    """
    plan = data["plan"]
    per_replica = plan.get("per_replica_text") or f"{plan['per_replica_rps']:.1f} rps"
    lines = [
        f"per-replica max rate under p99 <= {plan['p99_ms']:g} ms: {per_replica} (measured, 1 replica"
        + ("" if plan.get("per_replica_converged", True) else "; the search did not converge") + ")",
        f"plan: {'at most ' if not plan.get('per_replica_converged', True) else ''}{plan['replicas']} replica(s) = "
        f"ceil({plan['target_rps']:g} rps x (1 + {plan['headroom']:g}) / {plan['per_replica_rps']:.1f} rps per replica)",
    ]
    if plan.get("bound_note"):
        lines.append(f"how far off: {plan['bound_note']}")
    lines += [
        f"assumption: {plan['assumption']}",
        "",
        f"check (this machine allows {data['allowed_replicas']} replica(s)):",
        format_table(["replicas", "predicted_rps", "measured_rps", "measured/predicted", "search"], [
            [p["replicas"], p["predicted_rps"], p.get("measured") or p["measured_rps"], _fmt(p["ratio"], 2),
             f"{p['search'].get('stop_reason', '-')}, {p['search'].get('probe_count', '-')} probes"] for p in data["points"]]),
    ]
    worst = data.get("worst_ratio")
    if worst is not None:
        held = "held" if worst >= 0.9 else "did not hold"
        lines.append(f"linear model {held}: worst measured/predicted {worst:.2f} ({1 - worst:.0%} short of linear)"
                     if worst < 1 else f"linear model held: worst measured/predicted {worst:.2f}")
    if data.get("note"):
        lines.append(f"note: {data['note']}")
    return "\n".join(lines)
