"""TTFT and inter-token latency over time around a fault, exact, from a generative load's request records.

Definitions (reports quote these; the per-request figures are `harness.load.protocols.openai`'s and the
percentiles `harness.measure.percentiles`' exact ones, as `harness.measure.tokens` takes them):

- **Time axis**: seconds from the fault's injection (``origin_s``, wall-clock epoch seconds); a
  **bin** of ``bin_s`` (default 1 s) covers ``[k * bin_s, (k + 1) * bin_s)`` from the injection, so the
  injection is a bin edge.
- **TTFT over time**: each *successful* request's TTFT in the bin of its *intended send time* (when a
  user asked; the same time the client-side outage counts requests by), so the bins after a fault
  show what a user who asked then waited for the first token.
- **ITL over time**: each inter-token gap of a *successful* request in the bin of the *time the gap
  ended* (its later token's arrival: intended send time + TTFT + the gaps up to it), so an engine
  stall shows in the second the stream resumed, as long as it was.
- **Requests** and **failed** per bin: every request by intended send time (a failed one -- a cut
  stream, an error status, no answer -- adds no TTFT or gap: it is counted here).
- **Phases**: the measured span cut at the marks given (the injection, the rollback, the recovery,
  in time order); each phase's figures are exact percentiles over its own requests and gaps (by the
  same times), not over bins. The **worst bin** of a phase is, of the bins that overlap it (a bin
  across a mark counts for both phases: a phase shorter than a bin still has one), the one of highest
  p99 (TTFT, or ITL).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from harness.measure.percentiles import percentile
from harness.request_records import RequestRecord

__all__ = ["DEFAULT_BIN_S", "TokenBin", "TokenPhase", "gap_times_s", "bin_tokens", "token_phases"]

DEFAULT_BIN_S = 1.0


@dataclass(frozen=True)
class TokenBin:
    """One bin of `bin_tokens`: ``start_s`` from the injection; NaN percentiles where it holds no value."""

    start_s: float
    requests: int
    failed: int
    gaps: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class TokenPhase:
    """One phase of `token_phases`: from ``start_s`` to ``end_s`` (seconds from the injection)."""

    name: str
    start_s: float
    end_s: float
    requests: int
    failed: int
    gaps: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    worst_ttft_bin_s: float  # start of the bin of highest TTFT p99 (NaN: none)
    worst_ttft_p99_ms: float
    worst_itl_bin_s: float
    worst_itl_p99_ms: float

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def gap_times_s(record: RequestRecord) -> list[float]:
    """Return the epoch second each inter-token gap of ``record`` ended (see the module docs)."""
    if not math.isfinite(record.ttft_ms):
        return []
    times, elapsed_ms = [], record.ttft_ms
    for gap in record.itl_ms:
        elapsed_ms += gap
        times.append(record.intended_s + elapsed_ms / 1000.0)
    return times


def _p(values: list[float], q: float) -> float:
    return percentile(values, q) if values else math.nan


def _samples(records: Iterable[RequestRecord], origin_s: float):
    """Yield ("request", t, ok, ttft) per request and ("gap", t, None, gap) per gap, t from the injection."""
    for record in records:
        ttft = record.ttft_ms if record.ok and math.isfinite(record.ttft_ms) else math.nan
        yield "request", record.intended_s - origin_s, record.ok, ttft
        if record.ok:
            for when, gap in zip(gap_times_s(record), record.itl_ms):
                yield "gap", when - origin_s, None, gap


def bin_tokens(records: Sequence[RequestRecord], origin_s: float, bin_s: float = DEFAULT_BIN_S) -> list[TokenBin]:
    """Return the bins of ``records`` from the first to the last that holds a request or a gap, every bin
    between them included (an empty one has 0 requests and NaN percentiles); raise ValueError for a bin
    that is not positive."""
    if not bin_s > 0:
        raise ValueError(f"bin_s must be positive, got {bin_s!r}")
    filled: dict[int, dict[str, list]] = {}
    for kind, t, ok, value in _samples(records, origin_s):
        slot = filled.setdefault(math.floor(t / bin_s), {"ok": [], "ttft": [], "gap": []})
        if kind == "request":
            slot["ok"].append(ok)
            if math.isfinite(value):
                slot["ttft"].append(value)
        else:
            slot["gap"].append(value)
    if not filled:
        return []
    bins = []
    for index in range(min(filled), max(filled) + 1):
        slot = filled.get(index, {"ok": [], "ttft": [], "gap": []})
        bins.append(TokenBin(
            start_s=index * bin_s, requests=len(slot["ok"]), failed=slot["ok"].count(False), gaps=len(slot["gap"]),
            ttft_p50_ms=_p(slot["ttft"], 50), ttft_p99_ms=_p(slot["ttft"], 99),
            itl_p50_ms=_p(slot["gap"], 50), itl_p99_ms=_p(slot["gap"], 99),
        ))
    return bins


def _worst(bins: list[TokenBin], key: str) -> tuple[float, float]:
    scored = [b for b in bins if math.isfinite(getattr(b, key))]
    if not scored:
        return math.nan, math.nan
    worst = max(scored, key=lambda b: getattr(b, key))
    return worst.start_s, getattr(worst, key)


def token_phases(records: Sequence[RequestRecord], origin_s: float, marks: Sequence[tuple[str, float]], *,
                 start_s: float, end_s: float, bin_s: float = DEFAULT_BIN_S) -> list[TokenPhase]:
    """Return the phases of ``records`` between ``start_s`` and ``end_s`` (seconds from ``origin_s``), cut at
    ``marks`` ((name, seconds from the injection) inside the span, taken in time order): the first phase is
    named "before <first mark>", each next "from <its mark>". A sample exactly at a mark is the later
    phase's."""
    inside = sorted((t, name) for name, t in marks if start_s < t < end_s)
    edges = [start_s, *(t for t, _ in inside), end_s]
    names = [f"before {inside[0][1]}" if inside else "measured span", *(f"from {name}" for _, name in inside)]
    samples = list(_samples(records, origin_s))
    bins = bin_tokens(records, origin_s, bin_s)
    phases = []
    for name, low, high in zip(names, edges, edges[1:]):
        last = high == end_s
        chosen = [s for s in samples if low <= s[1] < high or (last and s[1] == high)]
        oks = [s[2] for s in chosen if s[0] == "request"]
        ttft = [s[3] for s in chosen if s[0] == "request" and math.isfinite(s[3])]
        gaps = [s[3] for s in chosen if s[0] == "gap"]
        within = [b for b in bins if b.start_s < high and b.start_s + bin_s > low]
        worst_ttft, worst_itl = _worst(within, "ttft_p99_ms"), _worst(within, "itl_p99_ms")
        phases.append(TokenPhase(
            name=name, start_s=low, end_s=high, requests=len(oks), failed=oks.count(False), gaps=len(gaps),
            ttft_p50_ms=_p(ttft, 50), ttft_p99_ms=_p(ttft, 99), itl_p50_ms=_p(gaps, 50), itl_p99_ms=_p(gaps, 99),
            worst_ttft_bin_s=worst_ttft[0], worst_ttft_p99_ms=worst_ttft[1],
            worst_itl_bin_s=worst_itl[0], worst_itl_p99_ms=worst_itl[1],
        ))
    return phases
