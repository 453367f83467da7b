"""Exact latency percentiles and request summaries: the one place the harness computes percentiles.

Definitions (reports quote these):

- **Percentile**: exact, from the raw per-request latencies (never from histogram buckets), with
  linear interpolation between the two closest ranks -- the same numbers as ``numpy.percentile``'s
  default ``method="linear"`` (Hyndman & Fan type 7). For ``n`` sorted values ``x[0..n-1]`` the
  ``q``-th percentile is ``x[f] + (h - f) * (x[f+1] - x[f])`` with ``h = (n - 1) * q / 100`` and
  ``f = floor(h)``.
- **Which requests count**: percentiles and the mean are over *successful* requests (``ok`` true)
  with a finite latency. Failed requests are excluded from the latency figures and counted
  separately (``errors``, ``errors_by_status``; status 0 means no response arrived). A failure's
  latency is usually a timeout or an instant refusal, and mixing it in would make the
  percentiles describe the failure mode rather than the service.
- **Window**: a record belongs to the window ``[start_s, end_s)`` by its send time (``intended_s``
  for requests, ``t_s`` for prober samples).
- **Throughput** (``throughput_rps``): successful requests per second of the window;
  ``request_rate_rps`` is all requests (ok or not) per second. The window's duration is
  ``end_s - start_s`` when given, else from the first send to the last completion.
- **Throughput of a repeated window** (`summarize_windows`, the sweep's and the max-rate search's
  windows): successful requests *answered* in the window (by completion time, ``intended_s`` +
  latency) per second. Counted by send time, an open-loop window above the service's capacity would
  show the offered rate as throughput (every request sent in it is answered, late, after it), and a
  service that did not keep up would look as if it had; by completion time, an overloaded service's
  throughput is its capacity. Below capacity the two agree.

Everything here is pure numpy over records; nothing reads files or clocks.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from harness.request_records import ProbeSample, RequestRecord

__all__ = [
    "SUMMARY_PERCENTILES",
    "LatencySummary",
    "percentile",
    "percentiles",
    "percentile_key",
    "record_time_s",
    "select_window",
    "ok_latencies_ms",
    "summarize",
    "summarize_latencies",
    "summarize_windows",
]

SUMMARY_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)

Record = RequestRecord | ProbeSample


def percentile_key(q: float, unit: str = "ms") -> str:
    """Return the summary key for percentile ``q``: 99 -> ``p99_ms``, 99.9 -> ``p99_9_ms``."""
    text = f"{float(q):g}".replace(".", "_")
    return f"p{text}_{unit}" if unit else f"p{text}"


def _clean(values: Iterable[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float).ravel()
    return array[np.isfinite(array)]


def _validate_q(q: float) -> float:
    value = float(q)
    if not 0.0 <= value <= 100.0 or math.isnan(value):
        raise ValueError(f"percentile q={q!r}: must be between 0 and 100")
    return value


def _interpolate(ordered: np.ndarray, q: float) -> float:
    h = (ordered.size - 1) * (q / 100.0)  # the same operation order as numpy, for bit-equal results
    low = math.floor(h)
    high = min(low + 1, ordered.size - 1)
    t = h - low
    a, b = float(ordered[low]), float(ordered[high])
    # numpy's _lerp: interpolate from the nearer end, so the result is exact at both ranks and
    # agrees with numpy.percentile to the last bit in practice.
    return b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t


def percentiles(values: Iterable[float] | np.ndarray, qs: Sequence[float] = SUMMARY_PERCENTILES) -> dict[float, float]:
    """Return ``{q: value}`` for each percentile in ``qs`` of the finite ``values`` (NaN/inf dropped).

    Every value is NaN when no finite value remains. Raises ValueError for a ``q`` outside 0..100.
    """
    checked = [_validate_q(q) for q in qs]
    ordered = np.sort(_clean(values))
    if ordered.size == 0:
        return {q: math.nan for q in checked}
    return {q: _interpolate(ordered, q) for q in checked}


def percentile(values: Iterable[float] | np.ndarray, q: float) -> float:
    """Return the exact ``q``-th percentile (0..100) of the finite ``values``; NaN when there are none.

    Raises ValueError for a ``q`` outside 0..100.
    """
    return percentiles(values, (q,))[_validate_q(q)]


def record_time_s(record: Record) -> float:
    """Return a record's send time: ``intended_s`` for a request, ``t_s`` for a prober sample."""
    return record.intended_s if isinstance(record, RequestRecord) else record.t_s


def select_window(records: Iterable[Record], start_s: float | None = None, end_s: float | None = None) -> list[Record]:
    """Return the records sent in ``[start_s, end_s)`` (an open side when ``None``), in input order."""
    chosen = []
    for record in records:
        t = record_time_s(record)
        if start_s is not None and t < start_s:
            continue
        if end_s is not None and t >= end_s:
            continue
        chosen.append(record)
    return chosen


def ok_latencies_ms(records: Iterable[Record]) -> np.ndarray:
    """Return the finite latencies (ms) of the successful records, as a float array."""
    return _clean([r.latency_ms for r in records if r.ok])


@dataclass(frozen=True)
class LatencySummary:
    """Counts, throughput and exact latency statistics of one set of requests (see module docs)."""

    count: int
    ok: int
    errors: int
    errors_by_status: dict[int, int]
    duration_s: float
    throughput_rps: float
    request_rate_rps: float
    error_rate: float
    mean_ms: float
    max_ms: float
    percentiles_ms: dict[float, float] = field(default_factory=dict)

    def at(self, q: float) -> float:
        """Return the ``q``-th latency percentile (ms); NaN when ``q`` was not computed or no ok request."""
        return self.percentiles_ms.get(float(q), math.nan)

    @property
    def p50_ms(self) -> float:
        return self.at(50)

    @property
    def p90_ms(self) -> float:
        return self.at(90)

    @property
    def p95_ms(self) -> float:
        return self.at(95)

    @property
    def p99_ms(self) -> float:
        return self.at(99)

    @property
    def p99_9_ms(self) -> float:
        return self.at(99.9)

    def to_dict(self) -> dict[str, object]:
        """Return a flat, JSON-ready dict with unit-suffixed keys (NaN becomes None)."""
        data = asdict(self)
        data.pop("percentiles_ms")
        data["errors_by_status"] = {str(k): v for k, v in sorted(self.errors_by_status.items())}
        for q, value in self.percentiles_ms.items():
            data[percentile_key(q)] = value
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def _rate(count: int, duration_s: float) -> float:
    return count / duration_s if duration_s > 0 and math.isfinite(duration_s) else math.nan


def summarize_latencies(
    latencies_ms: Sequence[float] | np.ndarray,
    ok: Sequence[bool] | np.ndarray | None = None,
    statuses: Sequence[int] | np.ndarray | None = None,
    *,
    duration_s: float = math.nan,
    qs: Sequence[float] = SUMMARY_PERCENTILES,
) -> LatencySummary:
    """Return a `LatencySummary` of parallel arrays (latency, ok flag, HTTP status).

    ``ok`` defaults to "every finite latency succeeded"; ``statuses`` to 200 for ok and 0 otherwise.
    Raises ValueError when the arrays differ in length.
    """
    latency = np.asarray(latencies_ms, dtype=float).ravel()
    flags = np.isfinite(latency) if ok is None else np.asarray(ok, dtype=bool).ravel()
    codes = np.where(flags, 200, 0) if statuses is None else np.asarray(statuses, dtype=int).ravel()
    if not latency.size == flags.size == codes.size:
        raise ValueError(f"latencies_ms, ok and statuses differ in length: {latency.size}, {flags.size}, {codes.size}")
    good = _clean(latency[flags])
    count, n_ok = int(latency.size), int(flags.sum())
    errors = Counter(int(c) for c in codes[~flags])
    return LatencySummary(
        count=count,
        ok=n_ok,
        errors=count - n_ok,
        errors_by_status=dict(sorted(errors.items())),
        duration_s=float(duration_s),
        throughput_rps=_rate(n_ok, duration_s),
        request_rate_rps=_rate(count, duration_s),
        error_rate=(count - n_ok) / count if count else math.nan,
        mean_ms=float(good.mean()) if good.size else math.nan,
        max_ms=float(good.max()) if good.size else math.nan,
        percentiles_ms=percentiles(good, qs),
    )


def summarize(
    records: Iterable[Record],
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    duration_s: float | None = None,
    qs: Sequence[float] = SUMMARY_PERCENTILES,
) -> LatencySummary:
    """Return a `LatencySummary` of the records sent in ``[start_s, end_s)``.

    The duration for rates is ``duration_s`` if given, else ``end_s - start_s`` when both are given,
    else first send to last completion (send time + latency) of the selected records.
    Raises ValueError when ``end_s`` is before ``start_s``.
    """
    if start_s is not None and end_s is not None and end_s < start_s:
        raise ValueError(f"end_s={end_s!r} is before start_s={start_s!r}")
    chosen = select_window(records, start_s, end_s)
    if duration_s is None:
        if start_s is not None and end_s is not None:
            duration_s = end_s - start_s
        elif chosen:
            first = min(record_time_s(r) for r in chosen)
            ends = [record_time_s(r) + (r.latency_ms / 1000.0 if math.isfinite(r.latency_ms) else 0.0) for r in chosen]
            duration_s = max(ends) - first
        else:
            duration_s = math.nan
    return summarize_latencies(
        [r.latency_ms for r in chosen],
        [r.ok for r in chosen],
        [r.status for r in chosen],
        duration_s=duration_s,
        qs=qs,
    )


def summarize_windows(
    records: Sequence[Record],
    *,
    start_s: float,
    window_s: float,
    count: int,
    qs: Sequence[float] = SUMMARY_PERCENTILES,
) -> list[LatencySummary]:
    """Return one summary per consecutive window ``[start_s + i*window_s, start_s + (i+1)*window_s)``.

    Used for repeated measurement windows (sweeps): each window's rate is over its full length;
    its latencies are of the requests sent in it, its ``throughput_rps`` of the successful requests
    answered in it (see "Throughput of a repeated window" in the module docs).
    Raises ValueError for a non-positive ``window_s`` or a negative ``count``.
    """
    if not window_s > 0:
        raise ValueError(f"window_s={window_s!r}: must be greater than zero")
    if count < 0:
        raise ValueError(f"count={count!r}: must not be negative")
    done = np.sort(np.array([r.intended_s + r.latency_ms / 1000.0 for r in records
                             if isinstance(r, RequestRecord) and r.ok and math.isfinite(r.latency_ms)], dtype=float))
    summaries = []
    for i in range(count):
        lo, hi = start_s + i * window_s, start_s + (i + 1) * window_s
        summary = summarize(records, start_s=lo, end_s=hi, qs=qs)
        answered = int(np.searchsorted(done, hi, side="left") - np.searchsorted(done, lo, side="left"))
        summaries.append(replace(summary, throughput_rps=answered / window_s))
    return summaries
