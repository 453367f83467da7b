"""A chaos run's TTFT and inter-token latency over time around its fault (a generative load's records only).

Rebuilt from the run's saved files: the background load's ``requests.csv`` (TTFT and every inter-token
gap per request), ``result.json`` (the injection and recovery times) and ``journal.json`` (when the
rollback began). The figures are `harness.measure.token_timeline`'s (its definitions are quoted in the
report): per-second p50/p99 bins drawn as a chart, and per-phase exact figures as a table.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

from harness.report import charts
from harness.report.section import Section, add_figure, fmt

__all__ = ["add_tokens_over_time", "add_load_tokens_over_time", "fault_marks", "tokens_chart"]

Q_COLOURS = {"p50": "#00838f", "p99": "#6a1b9a"}  # apart from the marks' red and green
MARK_STYLES = {  # mark name -> (colour, line style): the fault, its rollback, the recovery
    "injection": (charts.BAD, "-"), "rollback": ("#ef6c00", "-."), "recovery": (charts.GOOD, "--"),
}


def _epoch(stamp: Any) -> float | None:
    """Return an ISO 8601 time (a Chaos Toolkit journal's ``start``) as epoch seconds, None when it is not one."""
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return None


def fault_marks(directory: Path, result: dict[str, Any], injected_s: float) -> list[tuple[str, float]]:
    """Return (name, seconds from the injection) of the injection, the rollback (the first rollback
    activity's start in journal.json, when it ran) and the recovery (result.json's ``recovered_at_s``)."""
    from harness.chaos.toolkit import JOURNAL_FILE
    from harness.errors import HarnessError
    from harness.jsonfile import read_json

    marks = [("injection", 0.0)]
    journal: Any = {}
    if (directory / JOURNAL_FILE).exists():
        try:
            journal = read_json(directory / JOURNAL_FILE)
        except HarnessError:
            journal = {}  # the chaos section reports what it can; a journal it cannot read gives no rollback mark
    starts = [_epoch(r.get("start")) for r in (journal.get("rollbacks") or []) if isinstance(r, dict)] \
        if isinstance(journal, dict) else []
    starts = [s for s in starts if s is not None]
    if starts:
        marks.append(("rollback", min(starts) - injected_s))
    recovered = result.get("recovered_at_s")
    if isinstance(recovered, (int, float)) and math.isfinite(recovered):
        marks.append(("recovery", float(recovered) - injected_s))
    return marks


def tokens_chart(bins: Sequence[Any], marks: Sequence[tuple[str, float]], *, bin_s: float, title: str = "",
                 origin: str = "fault injection") -> Figure | None:
    """Return per-bin TTFT p50/p99, ITL p50/p99 and requests/failures (`harness.measure.token_timeline.TokenBin`s)
    against seconds from ``origin`` (the injection), the marks drawn as vertical lines; None without bins."""
    if not bins:
        return None
    starts = [b.start_s for b in bins]
    edges = starts + [starts[-1] + bin_s]
    figure = Figure(figsize=(9.0, 6.2), layout="constrained")
    ttft, itl, count = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.4]})
    for axis, name, label in ((ttft, "ttft", "TTFT (ms)"), (itl, "itl", "inter-token latency (ms)")):
        drawn = []
        for q, colour in (("p50", Q_COLOURS["p50"]), ("p99", Q_COLOURS["p99"])):
            values = [getattr(b, f"{name}_{q}_ms") for b in bins]
            axis.stairs(values, edges, color=colour, linewidth=1.3, label=f"{q} per {bin_s:g} s", baseline=None)
            drawn += [v for v in values if math.isfinite(v) and v > 0]
        if drawn and max(drawn) / min(drawn) > 30:  # a stall next to millisecond gaps: both readable
            axis.set_yscale("log")
        else:
            axis.ticklabel_format(axis="y", useOffset=False, style="plain")
        axis.set_ylabel(label)
    ok = [b.requests - b.failed for b in bins]
    count.bar(starts, ok, width=bin_s, align="edge", color=charts.ACCENT, alpha=0.6, label="ok")
    count.bar(starts, [b.failed for b in bins], width=bin_s, align="edge", bottom=ok, color=charts.BAD, alpha=0.8,
              label="failed")
    count.set_ylabel("requests")
    for axis in (ttft, itl, count):
        for name, at in marks:
            colour, style = MARK_STYLES.get(name, (charts.NEUTRAL, ":"))
            axis.axvline(at, color=colour, linestyle=style, linewidth=1.4, label=name if axis is ttft else None)
        axis.grid(alpha=0.25, which="both")
    ttft.legend(fontsize=7, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=6)
    itl.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    count.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    count.set_xlabel(f"seconds from {origin} (bins of {bin_s:g} s; requests and TTFT by send time, "
                     "ITL by when the gap ended)")
    ttft.set_title(title or "TTFT and inter-token latency around the fault", fontsize=10, pad=18)
    return figure


def _worst(value: float, at: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{fmt(value)} ms at {at:+.0f} s"


def add_tokens_over_time(section: Section, directory: Path, result: dict[str, Any], injected_s: float,
                         window: tuple[float, float], title: str = "") -> list[dict[str, Any]] | None:
    """Add the chart and the per-phase table of TTFT and ITL around the fault to a chaos ``section`` when the
    run's requests.csv carries tokens, and return the phases as JSON-ready data (NaN: None); None otherwise."""
    from harness.measure.token_timeline import DEFAULT_BIN_S, bin_tokens, token_phases
    from harness.measure.tokens import has_tokens
    from harness.request_records import REQUESTS_FILE, RequestRecord, read_records

    path = directory / REQUESTS_FILE
    records = [r for r in read_records(path, RequestRecord) if window[0] <= r.intended_s <= window[1]] \
        if path.exists() else []
    if not has_tokens(records):
        return None
    marks = fault_marks(directory, result, injected_s)
    bins = bin_tokens(records, injected_s, DEFAULT_BIN_S)
    add_figure(section, f"TTFT and inter-token latency per {DEFAULT_BIN_S:g} s around the fault (p50, p99) with "
                        f"the requests sent; marks: {', '.join(name for name, _ in marks)}",
               tokens_chart(bins, marks, bin_s=DEFAULT_BIN_S, title=title))
    phases = token_phases(records, injected_s, marks, start_s=window[0] - injected_s, end_s=window[1] - injected_s)
    section.tables.append(("TTFT and inter-token latency by phase (exact; worst one-second bin of each)", [{
        "phase": p.name, "from (s)": p.start_s, "to (s)": p.end_s, "requests": p.requests, "failed": p.failed,
        "TTFT p50 (ms)": p.ttft_p50_ms, "TTFT p99 (ms)": p.ttft_p99_ms, "gaps": p.gaps,
        "ITL p50 (ms)": p.itl_p50_ms, "ITL p99 (ms)": p.itl_p99_ms,
        "worst TTFT p99": _worst(p.worst_ttft_p99_ms, p.worst_ttft_bin_s),
        "worst ITL p99": _worst(p.worst_itl_p99_ms, p.worst_itl_bin_s),
    } for p in phases]))
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in p.to_dict().items()}
            for p in phases]


def add_load_tokens_over_time(section: Section, directory: Path) -> None:
    """Add the chart of TTFT and ITL per second over a generative load (from its first request) to its ``section``;
    nothing for a load whose requests.csv carries no tokens."""
    from harness.measure.token_timeline import DEFAULT_BIN_S, bin_tokens
    from harness.measure.tokens import has_tokens
    from harness.request_records import REQUESTS_FILE, RequestRecord, read_records

    path = directory / REQUESTS_FILE
    records = list(read_records(path, RequestRecord)) if path.exists() else []
    if not has_tokens(records):
        return
    origin = min(r.intended_s for r in records)
    add_figure(section, f"TTFT and inter-token latency per {DEFAULT_BIN_S:g} s over the load (p50, p99)",
               tokens_chart(bin_tokens(records, origin, DEFAULT_BIN_S), [], bin_s=DEFAULT_BIN_S,
                            title="TTFT and inter-token latency over the load", origin="the first request"))
