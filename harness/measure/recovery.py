"""Recovery analysis of one fault: pure functions over the prober timeline, request records and events.

Definitions (reports quote these):

- **Window**: the analysis window is ``[injected_at_s, end_s)`` in wall-clock epoch seconds;
  ``end_s`` defaults to the end of the prober's observation (its last sample + one period).
- **Good / bad sample**: a prober sample is *good* when it succeeded (``ok``) with a finite latency
  at or under the latency SLO (``slo_latency_ms``); anything else -- an error, a timeout, a slow
  answer -- is *bad*. Latency-SLO violations are failures here.
- **First failure**: the send time of the first bad sample at or after the injection.
- **Recovered**: when clients *received* the first answer of the first run of consecutive good
  samples (after the first failure) that lasts at least ``stability_window_s``; a run lasts from its
  first sample's send time to the next bad sample's, or to the window's end. Shorter good runs
  between failures (flapping) do not count. Recovery is the receive time, not the send time: a
  request sent 0.3 s before a stall ends and answered within the SLO right after it was still
  waiting while the service was stalled. No bad sample at all is a valid result: recovered, TTR 0,
  no recovery time. A recovery cannot come before the fault's effect ends: (a) when a kill
  (Killing, OOMKilled, Exited) or readiness loss (NotReady) happens after a candidate recovery and
  bad samples follow it (a memory fault whose growth first only slowed answers, then ended in an
  OOM kill), the candidate is discarded and recovery is sought again from the first bad sample
  after that event; (b) a candidate received before the end of the longest unavailability (below)
  is discarded likewise, and recovery is sought again after it.
- **TTR** (time to recover): ``recovered_at_s - first_failure_s``; None when not recovered by the
  window's end (``recovered`` False) -- the fault outlasted the observation.
- **Client-side outage** (``outage_s``): what users felt, by *send* time: the total time of bad
  samples in the window on the prober's timeline (failed, or answered over the latency SLO); each
  sample stands for the time until the next sample (its period on a regular timeline), clipped to
  the window. An outage of exactly 2.0 s seen by a 50 ms prober measures 2.0 s within one period.
  For a stall of D seconds it is about D minus the SLO (requests sent in the stall's last SLO
  seconds are answered in time) plus however long the service takes to drain its backlog.
- **Unavailability** (``unavailability_s``): the service's view, by *receive* time: the longest
  interval in the window with no successful answer (``ok``, whatever its latency) received by the
  prober; it starts at the injection or at a success, and ends at the next success received (or
  at the window's end, then ``unavailability_open`` is true and the figure is a lower bound). For
  a stall of known length it equals the stall, plus the time the first answer after it takes; when
  nothing went wrong it is about one prober period.
- **Failed / total requests, availability**: the load's request records sent in the window;
  availability = ok / total (a slow but successful request is available). Without request records
  in the window, the prober's samples stand in (``availability_source`` says which).
- **Latency before / during / after** (exact p50/p99 of successful requests, or prober samples
  when there are no request records): *before* = the baseline ``[injected_at_s - baseline_s,
  injected_at_s)`` (all earlier data when ``baseline_s`` is None); *during* = ``[injected_at_s,
  recovered_at_s)``, or to the window's end when there was no failure or no recovery; *after* =
  ``[recovered_at_s, end_s)`` (empty, so None, when not recovered or never failed).
- **Platform view**: from the platform's events in the window: first kill (Killing, OOMKilled or
  Exited), OOM kill, exit code, readiness lost, the affected replica's restart and Ready-again
  times, restart and back-off counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from harness.errors import ConfigError, HarnessError
from harness.measure.percentiles import ok_latencies_ms, percentile, select_window
from harness.measure.platform_view import DISRUPTION_TYPES, parse_events, platform_view
from harness.request_records import ProbeSample, RequestRecord

__all__ = [
    "DEFAULT_PROBE_PERIOD_S",
    "RecoveryResult",
    "is_good",
    "infer_period_s",
    "bad_intervals",
    "longest_unavailability",
    "analyze_recovery",
]

DEFAULT_PROBE_PERIOD_S = 0.05
_EPS_S = 1e-6  # float slack when comparing run lengths against the stability window


def is_good(sample: ProbeSample, slo_latency_ms: float) -> bool:
    """Return True when a prober sample succeeded with a finite latency within ``slo_latency_ms``."""
    return bool(sample.ok) and math.isfinite(sample.latency_ms) and sample.latency_ms <= slo_latency_ms


def infer_period_s(samples: Sequence[ProbeSample], default_s: float = DEFAULT_PROBE_PERIOD_S) -> float:
    """Return the prober's period: the median gap between consecutive sends, or ``default_s``."""
    times = np.sort(np.array([s.t_s for s in samples], dtype=float))
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if gaps.size else default_s


def _durations(times: np.ndarray, period_s: float, end_s: float, next_s: float | None = None) -> np.ndarray:
    """Each sample stands until the next send (the last one for a period, or until ``next_s``), clipped to ``end_s``."""
    last = times[-1] + period_s if next_s is None else next_s
    following = np.append(times[1:], last)
    return np.clip(np.minimum(following, end_s) - times, 0.0, None)


def _spans(times: np.ndarray, durations: np.ndarray, bad: np.ndarray) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    for t, duration in zip(times[bad], durations[bad]):
        if duration <= 0:
            continue
        if spans and abs(spans[-1][1] - t) <= _EPS_S:
            spans[-1] = (spans[-1][0], float(t + duration))
        else:
            spans.append((float(t), float(t + duration)))
    return spans


def bad_intervals(
    timeline: Sequence[ProbeSample], slo_latency_ms: float, *, period_s: float | None = None, end_s: float | None = None
) -> list[tuple[float, float]]:
    """Return the merged ``(start_s, end_s)`` spans of bad samples (for charts and outage totals).

    ``period_s`` defaults to `infer_period_s`; ``end_s`` to the last sample + one period.
    """
    samples = sorted(timeline, key=lambda s: s.t_s)
    if not samples:
        return []
    period = infer_period_s(samples) if period_s is None else period_s
    times = np.array([s.t_s for s in samples], dtype=float)
    stop = times[-1] + period if end_s is None else end_s
    bad = np.array([not is_good(s, slo_latency_ms) for s in samples], dtype=bool)
    return _spans(times, _durations(times, period, stop), bad)


@dataclass(frozen=True)
class RecoveryResult:
    """What clients and the platform saw of one fault (definitions in the module docstring)."""

    injected_at_s: float
    window_end_s: float
    first_failure_s: float | None
    recovered_at_s: float | None
    recovered: bool
    ttr_s: float | None
    time_to_failure_s: float | None
    outage_s: float
    outages: list[tuple[float, float]]
    unavailability_s: float
    unavailable_from_s: float
    unavailable_until_s: float
    unavailability_open: bool
    failed_requests: int
    total_requests: int
    availability: float
    availability_source: str
    p50_ms_before: float
    p99_ms_before: float
    p50_ms_during: float
    p99_ms_during: float
    p50_ms_after: float
    p99_ms_after: float
    latency_source: str
    probe_samples: int
    bad_samples: int
    probe_period_s: float
    slo_latency_ms: float
    stability_window_s: float
    platform: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (NaN becomes None; outages as [start_s, end_s] lists)."""
        data = asdict(self)
        data["outages"] = [list(span) for span in self.outages]
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def _validate(injected_at_s: float, slo_latency_ms: float, stability_window_s: float, baseline_s: float | None) -> None:
    if not math.isfinite(injected_at_s):
        raise ConfigError("injected_at_s", injected_at_s, "must be a finite epoch time")
    if not (math.isfinite(slo_latency_ms) and slo_latency_ms > 0):
        raise ConfigError("slo_latency_ms", slo_latency_ms, "must be greater than zero")
    if not (math.isfinite(stability_window_s) and stability_window_s >= 0):
        raise ConfigError("stability_window_s", stability_window_s, "must be zero or more seconds")
    if baseline_s is not None and not baseline_s > 0:
        raise ConfigError("baseline_s", baseline_s, "must be greater than zero (or None for all earlier data)")


def _recovery(good: np.ndarray, times: np.ndarray, first_bad: int, end_s: float, stability_window_s: float) -> int | None:
    """Return the index of the first sample of the first good run after ``first_bad`` lasting the
    stability window (send times), or None."""
    index = first_bad
    while index < good.size:
        if not good[index]:
            index += 1
            continue
        start = index
        while index < good.size and good[index]:
            index += 1
        run_end = times[index] if index < good.size else end_s
        if run_end - times[start] >= stability_window_s - _EPS_S:
            return start
    return None


def _recovery_after_disruptions(
    good: np.ndarray, times: np.ndarray, start: int | None, end_s: float, stability_window_s: float,
    disruptions_s: Sequence[float],
) -> int | None:
    """Return ``start`` moved past every later disruption (an event, the longest unavailability's
    start) that bad samples follow."""
    while start is not None:
        later = [t for t in disruptions_s if times[start] < t < end_s]
        bad_after = [int(i) for i in np.flatnonzero(~good) if later and times[i] >= min(later)]
        if not bad_after:
            return start
        start = _recovery(good, times, bad_after[0], end_s, stability_window_s)
    return None


def longest_unavailability(
    samples: Sequence[ProbeSample], start_s: float, end_s: float
) -> tuple[float, float, float, bool]:
    """Return (seconds, from_s, until_s, open) of the longest interval in ``[start_s, end_s]`` with no
    successful answer received (see **Unavailability** in the module docstring).

    ``open`` is True when the interval runs to ``end_s`` with no success after it (a lower bound).
    """
    received = sorted(
        s.t_s + s.latency_ms / 1000.0 for s in samples if s.ok and math.isfinite(s.latency_ms)
    )
    edges = [start_s] + [t for t in received if start_s < t <= end_s]
    best = (0.0, start_s, start_s, False)
    for before, after in zip(edges, edges[1:]):
        if after - before > best[0]:
            best = (after - before, before, after, False)
    if end_s - edges[-1] > best[0]:
        best = (end_s - edges[-1], edges[-1], end_s, True)
    return best


def analyze_recovery(
    timeline: Sequence[ProbeSample],
    *,
    injected_at_s: float,
    slo_latency_ms: float,
    stability_window_s: float,
    requests: Iterable[RequestRecord] = (),
    events: Iterable[Any] = (),
    end_s: float | None = None,
    baseline_s: float | None = None,
    probe_period_s: float | None = None,
) -> RecoveryResult:
    """Return the `RecoveryResult` of a fault injected at ``injected_at_s`` (see module docstring).

    Raises ConfigError for invalid parameters or malformed events, HarnessError when the prober has
    no sample in the window (no observation is not "no outage").
    """
    _validate(injected_at_s, slo_latency_ms, stability_window_s, baseline_s)
    samples = sorted(timeline, key=lambda s: s.t_s)
    requests = list(requests)  # read twice below: counts, then latency phases
    parsed_events = parse_events(events)
    period = infer_period_s(samples) if probe_period_s is None else float(probe_period_s)
    if not period > 0:
        raise ConfigError("probe_period_s", probe_period_s, "must be greater than zero")
    if not samples:
        raise HarnessError("the prober timeline is empty: cannot judge recovery without observations")
    if end_s is None:
        end_s = samples[-1].t_s + period
    if not end_s > injected_at_s:
        raise ConfigError("end_s", end_s, f"must be after injected_at_s={injected_at_s!r}")
    window = [s for s in samples if injected_at_s <= s.t_s < end_s]
    if not window:
        raise HarnessError(
            f"no prober sample in the analysis window [{injected_at_s!r}, {end_s!r}): cannot judge recovery"
        )

    times = np.array([s.t_s for s in window], dtype=float)
    good = np.array([is_good(s, slo_latency_ms) for s in window], dtype=bool)
    later = [s.t_s for s in samples if s.t_s >= end_s]
    durations = _durations(times, period, end_s, later[0] if later else None)
    outage_s = float(durations[~good].sum())

    unavailable_s, unavailable_from, unavailable_until, unavailable_open = longest_unavailability(
        samples, injected_at_s, end_s)
    bad_indexes = np.flatnonzero(~good)
    if bad_indexes.size == 0:
        first_failure = recovered_at = None
        recovered, ttr = True, 0.0
    else:
        first_failure = float(times[bad_indexes[0]])
        start = _recovery(good, times, int(bad_indexes[0]), end_s, stability_window_s)
        disruptions = [e["time_s"] for e in parsed_events if e["type"] in DISRUPTION_TYPES] + [unavailable_from]
        start = _recovery_after_disruptions(good, times, start, end_s, stability_window_s, disruptions)
        recovered_at = None if start is None else float(times[start] + window[start].latency_ms / 1000.0)
        recovered = recovered_at is not None
        ttr = recovered_at - first_failure if recovered_at is not None else None

    in_window = select_window(requests, injected_at_s, end_s)
    if in_window:
        total, failed, source = len(in_window), sum(not r.ok for r in in_window), "requests"
    else:
        total, failed, source = len(window), sum(not s.ok for s in window), "prober"
    latency_records: Sequence[RequestRecord | ProbeSample] = requests if requests else samples
    before_start = None if baseline_s is None else injected_at_s - baseline_s
    split = recovered_at if recovered_at is not None else end_s
    phases = {
        "before": select_window(latency_records, before_start, injected_at_s),
        "during": select_window(latency_records, injected_at_s, split),
        "after": select_window(latency_records, split, end_s) if recovered_at is not None else [],
    }
    latency = {name: ok_latencies_ms(chosen) for name, chosen in phases.items()}

    return RecoveryResult(
        injected_at_s=float(injected_at_s),
        window_end_s=float(end_s),
        first_failure_s=first_failure,
        recovered_at_s=recovered_at,
        recovered=recovered,
        ttr_s=ttr,
        time_to_failure_s=None if first_failure is None else first_failure - injected_at_s,
        outage_s=outage_s,
        outages=_spans(times, durations, ~good),
        unavailability_s=float(unavailable_s),
        unavailable_from_s=float(unavailable_from),
        unavailable_until_s=float(unavailable_until),
        unavailability_open=bool(unavailable_open),
        failed_requests=int(failed),
        total_requests=int(total),
        availability=(total - failed) / total,
        availability_source=source,
        p50_ms_before=percentile(latency["before"], 50),
        p99_ms_before=percentile(latency["before"], 99),
        p50_ms_during=percentile(latency["during"], 50),
        p99_ms_during=percentile(latency["during"], 99),
        p50_ms_after=percentile(latency["after"], 50),
        p99_ms_after=percentile(latency["after"], 99),
        latency_source="requests" if requests else "prober",
        probe_samples=len(window),
        bad_samples=int(bad_indexes.size),
        probe_period_s=period,
        slo_latency_ms=float(slo_latency_ms),
        stability_window_s=float(stability_window_s),
        platform=platform_view(parsed_events, injected_at_s, end_s),
    )
