"""Figures that may be bounds: a max rate found by search or read off a grid, and ratios of them.

Definitions (reports quote these):
- A configuration's *max rate* is the highest request rate measured to meet the SLO. It is known
  as a bracket: ``low`` (the highest rate measured to pass) and ``high`` (the lowest rate known to
  fail; None when none failed, because the grid or the search's budget topped out first).
- It is *exact* when the bracket is within the search's tolerance (``converged``); any other max
  rate is a lower bound and reads "at least X" (below the lowest failing rate, where one is known).
- An *effect* is a ratio of two max rates (or of two forward-pass speeds). Its bracket follows by
  interval arithmetic: a / b lies between a.low / b.high and a.high / b.low; a side that is
  unknown (no failing rate) leaves that end open: "at least L", "at most H", or n/a when both are.
- A throughput measured at a load the service kept up with is the offered load, not a capacity:
  it only ever gives a lower bound (``rate_from_grid``), never an effect on its own.
- An effect's *direction* (`direction`) is a gain when its whole bracket lies above 1 + `NOISE_BAND`, a
  loss when it lies below 1 / (1 + `NOISE_BAND`), none beyond noise when it lies between the two, and
  unclear otherwise. `NOISE_BAND` is the tolerance within which two searches of ONE configuration agree
  (`harness.sweep.crosscheck.AGREE_TOLERANCE`): a ratio closer to 1 than that cannot be told apart from
  the same configuration measured twice.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from harness.sweep.crosscheck import AGREE_TOLERANCE

__all__ = ["EXACT", "AT_LEAST", "AT_MOST", "RANGE", "UNKNOWN", "NOISE_BAND", "GAIN", "LOSS", "NO_EFFECT", "UNCLEAR",
           "Bracket", "rate_from_search", "rate_from_grid", "ratio", "plain_ratio", "direction"]

EXACT = "exact"
AT_LEAST = "at least"
AT_MOST = "at most"
RANGE = "range"
UNKNOWN = "unknown"

NOISE_BAND = AGREE_TOLERANCE
GAIN, LOSS, NO_EFFECT, UNCLEAR = "gain", "loss", "none beyond noise", "unclear"

GRID_TOLERANCE = 0.05  # adjacent grid levels this close (relative) locate a knee as well as a search does


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Bracket:
    """A figure with the interval it is known to lie in; ``high`` None: no upper end is known."""

    value: float  # the figure to quote: the highest passing rate, or the ratio of the quoted figures
    low: float | None
    high: float | None
    converged: bool  # the interval is within tolerance: the value may be quoted as it is
    source: str = ""  # search | grid | forward | ratio
    detail: str = ""

    @property
    def bound(self) -> str:
        """How the figure may be quoted: exact, at least, at most, range or unknown."""
        if self.converged and _finite(self.value):
            return EXACT
        has_low = self.low is not None and self.low > 0
        has_high = self.high is not None and math.isfinite(self.high)
        if has_low and has_high:
            return RANGE
        if has_low:
            return AT_LEAST
        if has_high:
            return AT_MOST
        return UNKNOWN

    def text(self, digits: int = 1) -> str:
        """Return the figure for people: "549.0", "at least 549.0 (below 1006.0)", "between 1.2 and 1.9"."""
        bound = self.bound

        def f(x: float | None) -> str:
            return f"{x:.{digits}f}"

        if bound == EXACT:
            return f(self.value)
        if bound == UNKNOWN:
            return "n/a"
        if self.source in ("search", "grid"):  # a rate: the passing rate is the figure, the failing one its ceiling
            if bound == AT_MOST:
                return f"below {f(self.high)} (no rate passed)"
            return f"at least {f(self.low)}" + (f" (below {f(self.high)})" if bound == RANGE else "")
        if bound == RANGE:
            return f"between {f(self.low)} and {f(self.high)}"
        return f"at least {f(self.low)}" if bound == AT_LEAST else f"at most {f(self.high)}"

    def to_dict(self, digits: int = 1) -> dict[str, Any]:
        data = asdict(self)
        data.update(bound=self.bound, text=self.text(digits))
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Bracket":
        value = data.get("value")
        return cls(float(value) if _finite(value) else math.nan, data.get("low"), data.get("high"),
                   bool(data.get("converged")), str(data.get("source") or ""), str(data.get("detail") or ""))


def rate_from_search(search: Mapping[str, Any]) -> Bracket:
    """Return the max rate of a `SearchResult.to_dict()`: exact when it converged, else a lower bound."""
    low = search.get("lower_rps")
    high = search.get("upper_rps")
    value = float(search.get("max_rate_rps") or 0.0)
    detail = f"search {search.get('stop_reason', '?')} after {search.get('probe_count', len(search.get('probes') or []))} probe(s)"
    return Bracket(value, float(low) if _finite(low) else 0.0, float(high) if _finite(high) else None,
                   bool(search.get("converged")) and value > 0, "search", detail)


def rate_from_grid(points: Iterable[Mapping[str, Any]]) -> Bracket:
    """Return the max rate one configuration's grid points show: the highest level that met the SLO (a
    lower bound: there throughput is the offered load) below the lowest measured level that did not."""
    measured = [p for p in points if p.get("windows")]
    passing = [float(p["load_level"]) for p in measured if p.get("meets_slo")]
    low = max(passing, default=0.0)
    failing = [float(p["load_level"]) for p in measured if not p.get("meets_slo") and float(p["load_level"]) > low]
    high = min(failing, default=None)
    converged = low > 0 and high is not None and (high - low) / high <= GRID_TOLERANCE
    detail = f"grid: {len(passing)} of {len(measured)} measured level(s) met the SLO"
    return Bracket(low, low, high, converged, "grid", detail)


def ratio(a: Bracket, b: Bracket, detail: str = "") -> Bracket:
    """Return a / b with its interval (see the module's definitions)."""
    value = a.value / b.value if _finite(a.value) and _finite(b.value) and b.value > 0 else math.nan
    a_low = a.low if a.low is not None and a.low > 0 else None
    low = a_low / b.high if a_low is not None and b.high else None
    high = a.high / b.low if a.high is not None and b.low else None
    converged = a.converged and b.converged and _finite(value)
    return Bracket(value, low, high, converged, "ratio", detail)


def plain_ratio(a: float, b: float, source: str = "forward", detail: str = "") -> Bracket:
    """Return a / b of two measured figures (no bracket: quoted as measured; NaN when either is missing)."""
    ok = _finite(a) and _finite(b) and b > 0
    value = a / b if ok else math.nan
    return Bracket(value, value if ok else None, value if ok else None, ok, source, detail)


def direction(effect: Bracket) -> str:
    """Return an effect's direction: gain, loss, none beyond noise or unclear (see the module's definitions)."""
    bound = effect.bound
    if bound == EXACT:
        low = high = effect.value
    else:
        low = effect.low if bound in (AT_LEAST, RANGE) else None
        high = effect.high if bound in (AT_MOST, RANGE) else None
    if low is not None and low > 1.0 + NOISE_BAND:
        return GAIN
    if high is not None and high < 1.0 / (1.0 + NOISE_BAND):
        return LOSS
    if low is not None and high is not None and low >= 1.0 / (1.0 + NOISE_BAND) and high <= 1.0 + NOISE_BAND:
        return NO_EFFECT
    return UNCLEAR
