"""Token latencies and goodput of a generative load, exact, from its per-request records.

Definitions (reports quote these; the per-request figures are `harness.load.protocols.openai`'s):

- **TTFT, TPOT, end-to-end percentiles**: exact percentiles (`harness.measure.percentiles`, the one
  place they are computed: numpy's linear method) over the *successful* requests that have the figure
  (a finite value; TPOT needs at least 2 output tokens), as the latency percentiles are.
- **ITL percentiles**: over *all inter-token gaps* of the successful requests pooled together, each gap
  one value (a long answer weighs more than a short one, as vLLM's benchmark counts it), not over
  per-request means.
- **Output tokens per second**: the output tokens of the successful requests per second of the load.
- **Goodput**: good requests per second of the load, a request being good as `harness.slo` defines it
  (it succeeded and met every bound of the token SLO); ``good_share`` is good requests over all
  requests. A failed request -- a stream cut mid-response, a timeout, an error status -- counts as a
  miss in both, never dropped: the share is over every request sent.
- **Duration** of the load: first send to last completion of its records, as `summarize` takes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from harness.measure.percentiles import SUMMARY_PERCENTILES, percentile_key, percentiles, summarize
from harness.request_records import RequestRecord
from harness.slo import Slo, TokenSlo

__all__ = ["TokenSummary", "is_good", "has_tokens", "summarize_tokens"]


@dataclass(frozen=True)
class TokenSummary:
    """TTFT / TPOT / ITL statistics, output-token rate and goodput of one load (see the module docs)."""

    requests: int
    ok: int
    good: int
    duration_s: float
    output_tokens: int
    output_tokens_per_s: float
    goodput_rps: float
    good_share: float
    bounds: dict[str, float | None]
    ttft_ms: dict[float, float] = field(default_factory=dict)
    tpot_ms: dict[float, float] = field(default_factory=dict)
    itl_ms: dict[float, float] = field(default_factory=dict)
    means_ms: dict[str, float] = field(default_factory=dict)  # ttft, tpot, itl

    def to_dict(self) -> dict[str, object]:
        """Return a flat, JSON-ready dict: ``ttft_p99_ms``, ``itl_p50_ms``, ``mean_tpot_ms``... (NaN: None)."""
        data: dict[str, object] = {
            "requests": self.requests, "ok": self.ok, "good": self.good, "duration_s": self.duration_s,
            "output_tokens": self.output_tokens, "output_tokens_per_s": self.output_tokens_per_s,
            "goodput_rps": self.goodput_rps, "good_share": self.good_share, "bounds": dict(self.bounds),
        }
        for name in ("ttft", "tpot", "itl"):
            data[f"mean_{name}_ms"] = self.means_ms.get(name, math.nan)
            for q, value in getattr(self, f"{name}_ms").items():
                data[f"{name}_{percentile_key(q)}"] = value
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def has_tokens(records: Iterable[RequestRecord]) -> bool:
    """True when any record carries a token figure (a TTFT or output tokens): a generative load."""
    return any(math.isfinite(r.ttft_ms) or r.output_tokens > 0 for r in records)


def is_good(record: RequestRecord, bounds: dict[str, float | None]) -> bool:
    """True when ``record`` succeeded and meets every bound that is set (see `harness.slo`, "Token SLO")."""
    if not record.ok or not math.isfinite(record.latency_ms) or record.latency_ms > bounds["e2e_ms"]:
        return False
    if bounds.get("ttft_ms") is not None and not record.ttft_ms <= bounds["ttft_ms"]:  # NaN: no token came
        return False
    if bounds.get("itl_ms") is not None and any(gap > bounds["itl_ms"] for gap in record.itl_ms):  # no gap meets it
        return False
    return bounds.get("tpot_ms") is None or not record.tpot_ms > bounds["tpot_ms"]  # NaN: one token, no gap


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def summarize_tokens(records: Sequence[RequestRecord], slo: Slo, token_slo: TokenSlo | None = None, *,
                     duration_s: float | None = None, qs: Sequence[float] = SUMMARY_PERCENTILES) -> TokenSummary:
    """Return the `TokenSummary` of ``records`` judged by ``slo`` and ``token_slo`` (see the module docs).

    ``duration_s`` defaults to first send to last completion of the records.
    """
    records = list(records)
    bounds = (token_slo or TokenSlo()).bounds(slo)
    ok = [r for r in records if r.ok]
    duration = summarize(records).duration_s if duration_s is None else float(duration_s)
    ttft = [r.ttft_ms for r in ok]
    tpot = [r.tpot_ms for r in ok]
    itl = [gap for r in ok for gap in r.itl_ms]
    good = sum(is_good(r, bounds) for r in records)
    tokens = sum(r.output_tokens for r in ok)
    rate = (lambda n: n / duration) if duration > 0 and math.isfinite(duration) else (lambda n: math.nan)
    return TokenSummary(
        requests=len(records), ok=len(ok), good=good, duration_s=duration, output_tokens=tokens,
        output_tokens_per_s=rate(tokens), goodput_rps=rate(good),
        good_share=good / len(records) if records else math.nan, bounds=bounds,
        ttft_ms=percentiles(ttft, qs), tpot_ms=percentiles(tpot, qs), itl_ms=percentiles(itl, qs),
        means_ms={"ttft": _mean(ttft), "tpot": _mean(tpot), "itl": _mean(itl)},
    )
