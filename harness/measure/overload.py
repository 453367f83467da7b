"""What a load spike above capacity did: goodput, and the latency of what the front end admitted.

Definitions (the report and the README quote these):

- **Rejected**: answered 429 by the front balancer's rate limiter (it never reached a replica; the
  reference service sheds its own overload with 503, never 429).
- **Admitted**: every other request that was sent: answered by a replica (any status), or failed on
  the way (a timeout, a reset). Requests the generator could not send (``overflow``) are neither.
- **p99 of admitted requests**: the 99th percentile (`harness.measure.percentiles`) of the latency of
  *every* admitted request, failed ones included (a timeout counts with its latency): what the
  requests let in experienced, so a service drowning in a queue cannot look fast by failing.
- **Goodput**: requests answered successfully within the latency SLO, per second of the window;
  lost goodput is the offered rate it falls short of.
- **Backlog growth** (`backlog_growth`): the least-squares slope of the successful requests' latency
  (s) against their send time (s) over a window: seconds of waiting added per second. A service
  that keeps up holds it near 0 (a burst it is draining makes it negative); a FIFO queue served at
  ``mu`` and offered ``lambda > mu`` grows its wait at ``(lambda - mu) / mu``, so the rate it
  completes is ``lambda / (1 + growth)``. Unlike a count of answers in the window, it does not
  mistake the requests in flight filling up after a generator starts for a shortfall, nor the
  Poisson difference between two windows for one.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from harness.measure.percentiles import percentile
from harness.request_records import RequestRecord

__all__ = ["RATE_LIMITED_STATUS", "overload_summary", "backlog_growth", "completed_rate"]

RATE_LIMITED_STATUS = 429


def overload_summary(records: Iterable[RequestRecord], *, slo_latency_ms: float,
                     duration_s: float | None = None) -> dict[str, Any]:
    """Return the spike's figures (see the module docstring) for ``records``; ``duration_s`` defaults to the
    span of their send times. Raises ValueError when there is no record."""
    rows = list(records)
    if not rows:
        raise ValueError("no request records to summarise")
    starts = [r.intended_s for r in rows]
    span_s = duration_s if duration_s and duration_s > 0 else max(max(starts) - min(starts), 1e-9)
    sent = [r for r in rows if math.isfinite(r.latency_ms)]
    rejected = [r for r in sent if r.status == RATE_LIMITED_STATUS]
    admitted = [r for r in sent if r.status != RATE_LIMITED_STATUS]
    ok = [r for r in admitted if r.ok]
    good = [r for r in ok if r.latency_ms <= slo_latency_ms]
    shed = [r for r in admitted if r.status == 503]

    def p99(values: list[float]) -> float | None:
        return round(percentile(values, 99), 3) if values else None

    return {
        "requests": len(rows), "not_sent": len(rows) - len(sent), "rejected": len(rejected), "admitted": len(admitted),
        "ok": len(ok), "shed_503": len(shed), "failed_admitted": len(admitted) - len(ok),
        "offered_rps": round(len(rows) / span_s, 3), "admitted_rps": round(len(admitted) / span_s, 3),
        "goodput_rps": round(len(good) / span_s, 3), "goodput_share": round(len(good) / len(rows), 4),
        "p99_admitted_ms": p99([r.latency_ms for r in admitted]), "p99_ok_ms": p99([r.latency_ms for r in ok]),
        "slo_latency_ms": slo_latency_ms, "duration_s": round(span_s, 3),
        "p99_admitted_within_slo": (p99([r.latency_ms for r in admitted]) or math.inf) <= slo_latency_ms,
    }


def backlog_growth(records: Iterable[RequestRecord], start_s: float, end_s: float) -> float:
    """Return the backlog growth (see the module docstring) of the successful requests sent in
    ``[start_s, end_s)``; NaN with fewer than 3 of them or no spread in their send times."""
    points = [(r.intended_s, r.latency_ms / 1000.0) for r in records
              if r.ok and start_s <= r.intended_s < end_s and math.isfinite(r.latency_ms)]
    if len(points) < 3:
        return math.nan
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_l = sum(lat for _, lat in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    if var_t <= 0:
        return math.nan
    return sum((t - mean_t) * (lat - mean_l) for t, lat in points) / var_t


def completed_rate(offered_rps: float, growth: float) -> float:
    """Return the rate a FIFO service completes when offered ``offered_rps`` with backlog growth
    ``growth``: ``offered / (1 + growth)`` when the backlog grows, else the offered rate."""
    if not math.isfinite(growth) or growth <= 0:
        return offered_rps
    return offered_rps / (1.0 + growth)
