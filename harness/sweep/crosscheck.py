"""One replica measured twice: the capacity plan's search checked against the sweep's for the same configuration.

In the main job the sweep searches each configuration's max rate, and the capacity stage then searches
one replica of one of them (fp32, batch 32 in smoke) again, by the same code (`harness.sweep.maxrate`).
The two figures must agree; when they do not, one of the searches met a transient on a shared machine (a
probe failing at a rate the same configuration had just sustained), and a plan built on it would be off
by as much.

Definition (the one the report quotes): two max-rate figures of one configuration AGREE when the larger
is at most `AGREE_TOLERANCE` (15 %) above the smaller. When the capacity search disagrees with the
reference, it searches once more, starting at the reference's figure (`RESEARCH_REASON`); the plan uses
the second search, and both searches, the reference and whether the second agreed are kept in
``capacity.json`` (``cross_check``) and said in its note. A disagreement that persists is reported, not
hidden: the plan is then only as good as the machine was quiet.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["AGREE_TOLERANCE", "DEFINITION", "ReplicaReference", "agree", "gap", "sweep_reference",
           "read_sweep_reference", "cross_check_note"]

AGREE_TOLERANCE = 0.15
DEFINITION = (f"two searches of one configuration agree when the larger max rate is at most "
              f"{AGREE_TOLERANCE:.0%} above the smaller; on a disagreement the capacity search runs once more, "
              "from the other figure, and the plan uses that second search")


@dataclass(frozen=True)
class ReplicaReference:
    """Another search's figure for one replica of the same configuration and SLO."""

    rate_rps: float  # the highest rate it sustained
    upper_rps: float | None  # the lowest rate it failed at (None: none)
    converged: bool
    source: str  # for people: "the sweep's fp32 batch-32 search"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gap(a: float, b: float) -> float:
    """Return how far the larger of two rates is above the smaller, as a fraction (inf when one is 0)."""
    low, high = sorted((float(a), float(b)))
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0:
        return math.inf
    return high / low - 1.0


def agree(a: float, b: float) -> bool:
    """Return True when two max-rate figures of one configuration agree (see the module's definition)."""
    return gap(a, b) <= AGREE_TOLERANCE


def sweep_reference(summary: Mapping[str, Any] | None, precision: str, batch_size: int,
                    p99_ms: float) -> ReplicaReference | None:
    """Return the sweep's search figure for ``precision``/``batch_size`` from its saved summary, or None when
    the sweep did not search that configuration under the same p99 SLO (or found no passing rate)."""
    if not isinstance(summary, Mapping):
        return None
    slo = summary.get("slo") if isinstance(summary.get("slo"), Mapping) else {}
    if not isinstance(slo.get("p99_ms"), (int, float)) or not math.isclose(float(slo["p99_ms"]), float(p99_ms)):
        return None
    searches = summary.get("searches") if isinstance(summary.get("searches"), Mapping) else {}
    search = searches.get(f"{precision}/{batch_size}")
    if not isinstance(search, Mapping):
        return None
    rate = search.get("max_rate_rps")
    if not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        return None
    upper = search.get("upper_rps")
    return ReplicaReference(float(rate), float(upper) if isinstance(upper, (int, float)) else None,
                            bool(search.get("converged")), f"the sweep's {precision} batch-{batch_size} search")


def read_sweep_reference(sweep_dir: Path, settings: Any) -> ReplicaReference | None:
    """`sweep_reference` from the saved ``sweep_summary.json`` in ``sweep_dir`` for the configuration and SLO
    of ``settings`` (a `harness.sweep.planner.CapacitySettings`); None when it is missing or unreadable."""
    from harness.errors import RunRecordError
    from harness.jsonfile import read_json
    from harness.sweep.grid import SUMMARY_JSON

    try:
        summary = read_json(Path(sweep_dir) / SUMMARY_JSON)
    except (OSError, ValueError, RunRecordError):
        return None
    return sweep_reference(summary, settings.precision, settings.batch_size, settings.p99_ms)


def cross_check_note(reference: ReplicaReference, first_rps: float, second_rps: float | None) -> str:
    """Return the capacity note's sentence on the cross-check ("" when the first search agreed)."""
    if second_rps is None:
        return ""
    first_gap = gap(first_rps, reference.rate_rps)
    said = (f"one replica's first search ({first_rps:.1f} rps) disagreed with {reference.source} "
            f"({reference.rate_rps:.1f} rps, {_pct(first_gap)} apart); searched again from {reference.rate_rps:.1f}: "
            f"{second_rps:.1f} rps, used by the plan")
    if agree(second_rps, reference.rate_rps):
        return f"{said}, which agrees (a transient on the first)"
    return (f"{said}; it still disagrees ({_pct(gap(second_rps, reference.rate_rps))} apart, more than "
            f"{AGREE_TOLERANCE:.0%}): the machine was not quiet enough for either figure to be trusted alone")


def _pct(value: float) -> str:
    return "infinitely" if not math.isfinite(value) else f"{value:.0%}"
