"""Baseline vs current saved runs: per part and metric, the change and its verdict.

What counts as a regression is defined once, in `harness.measure.regression` (its docstring; `RULE`
summarises it and every comparison carries it). This module finds the evidence on disk, part by part,
parts being matched by their path inside the run directory (``load``, ``chaos/pod-kill/single``):

- **load parts** (``result.json`` with ``throughput_rps``): p50_ms and p99_ms, and throughput_rps
  under closed-loop load (open loop, the throughput is just the offered rate), one value per round
  from the run's ``rounds`` list (`harness load --rounds N`, `harness bench ab`). Paired when both runs
  carry the same interleave session id. A run without rounds is *inconclusive* (unless ``history``
  gives a run-level spread): the windows of one run are never treated as repeats.
- **chaos parts** (``result.json`` with ``experiment``), per fault x topology: ``ttr_s``, ``outage_s``
  and, where recorded, ``unavailability_s`` by the single-number rule; failed_requests / total_requests
  by Fisher's exact test.
- **sweeps** (``sweep.csv``): a point's repeats are windows inside one run, not independent rounds,
  so its rows show the medians and the change but are always *inconclusive*; a sweep never raises
  an alarm.

``history``: earlier runs of the baseline's build, used only to estimate run-to-run noise.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.environment import fingerprint_differences
from harness.measure.regression import (
    RULE,
    Finding,
    Rounds,
    Rules,
    check_failed_requests,
    check_rounds,
    judge_family,
    judge_single,
)
from harness.jsonfile import read_json
from harness.measure.stats import INCONCLUSIVE, REGRESSED
from harness.report import frames
from harness.report.sections import MAX_DEPTH
from harness.results import RUN_FILE, load_run

__all__ = ["Part", "collect_parts", "compare_runs", "SWEEP_REASON"]

LOAD, CHAOS, SWEEP = "load", "chaos", "sweep"
SWEEP_REASON = "sweep repeats are windows inside one run, not rounds: shown, never judged"
SINGLE_METRICS = (("ttr_s", "did not recover"), ("outage_s", "not measured"), ("unavailability_s", "not measured"))


@dataclass
class Part:
    """One comparable part of a saved run: its path in the run, kind, result.json and directory."""

    path: str
    kind: str
    result: dict[str, Any]
    directory: Path


def _classify(directory: Path, root: Path) -> list[Part]:
    path = directory.relative_to(root).as_posix() or "."
    found: list[Part] = []
    result_path = directory / "result.json"
    result = read_json(result_path) if result_path.exists() else None
    if isinstance(result, dict) and "experiment" in result:
        found.append(Part(path, CHAOS, result, directory))
    elif isinstance(result, dict) and "throughput_rps" in result and "round" not in result:
        found.append(Part(path, LOAD, result, directory))
    if (directory / "sweep.csv").exists():
        found.append(Part(path, SWEEP, {}, directory))
    return found


def _label(path: str, part: Part) -> str:
    """Return how a part is named in the rows: its path in the run, or, for a run that is one part
    (path "."), what it measured: ``chaos/<experiment>/<topology>`` or ``load``."""
    if path != ".":
        return path
    if part.kind == CHAOS:
        experiment = str(part.result.get("experiment") or "experiment")
        return f"chaos/{Path(experiment).stem}/{part.result.get('topology') or '?'}"
    return part.kind


def collect_parts(run_dir: str | Path) -> dict[str, list[Part]]:
    """Return the comparable parts of a saved run keyed by their path (a directory may hold a load or
    chaos result and a sweep). The rounds of a run with rounds belong to it and are not parts."""
    root = Path(run_dir)
    parts: dict[str, list[Part]] = {}
    stack = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        found = _classify(directory, root)
        for part in found:
            parts.setdefault(part.path, []).append(part)
        if any(p.kind == LOAD and p.result.get("rounds") for p in found):
            continue  # round-01/ ... are this run's rounds
        if depth < MAX_DEPTH:
            stack.extend((c, depth + 1) for c in sorted(directory.iterdir()) if c.is_dir())
    return parts


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rounds(result: dict[str, Any], metric: str) -> Rounds:
    values, pairs = [], []
    for row in result.get("rounds") or []:
        value = _number(row.get(metric))
        if value is not None:
            values.append(value)
            pairs.append(row.get("pair"))
    return Rounds(tuple(values), tuple(pairs), _number(result.get(metric)))


def _paired(baseline: dict[str, Any], current: dict[str, Any]) -> bool:
    a, b = baseline.get("interleave") or {}, current.get("interleave") or {}
    return bool(a.get("session")) and a.get("session") == b.get("session") and a.get("arm") != b.get("arm")


def _history_values(history: Sequence[Part], metric: str) -> list[float]:
    return [v for v in (_number(p.result.get(metric)) for p in history) if v is not None]


def _shape(profile: Any) -> Any:
    """The load shape of a profile, without the model (a build may change it on purpose) and without the
    fields left unset (a field added since the baseline was saved is unset there and None here: the same shape)."""
    if not isinstance(profile, dict):
        return profile
    return {k: v for k, v in profile.items() if k != "model" and v is not None}


def _load_findings(name: str, base: Part, cur: Part, history: Sequence[Part], rules: Rules,
                   warnings: list[str]) -> list[Finding]:
    paired = _paired(base.result, cur.result)
    shapes = [_shape(p.result.get("profile")) for p in (base, cur)]
    if shapes[0] != shapes[1]:
        warnings.append(f"{name}: the load shapes differ ({shapes[0]} vs {shapes[1]}): the change mixes build and load")
    metrics = [("p50_ms", True), ("p99_ms", True)]
    if "rate" not in (base.result.get("load_mode"), cur.result.get("load_mode")):
        metrics.append(("throughput_rps", False))  # closed loop: throughput is the service's, not the offered rate
    findings = [check_rounds(f"{name}:{metric}", _rounds(base.result, metric), _rounds(cur.result, metric),
                             lower_is_better=lower, paired=paired,
                             history=() if paired else _history_values(history, metric), rules=rules)
                for metric, lower in metrics]
    return judge_family(findings, rules)


def _chaos_findings(name: str, base: Part, cur: Part, history: Sequence[Part], rules: Rules,
                    warnings: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    for metric, missing in SINGLE_METRICS:
        b, c = _number(base.result.get(metric)), _number(cur.result.get(metric))
        optional = metric != "ttr_s"
        if optional and (b is None or c is None):
            if (b is None) != (c is None):
                warnings.append(f"{name}:{metric}: only in the {'current' if b is None else 'baseline'} run, not compared")
            continue
        findings.append(judge_single(f"{name}:{metric}", b, c, history=_history_values(history, metric), rules=rules,
                                     missing=missing))
    counts = [(_number(p.result.get("failed_requests")), _number(p.result.get("total_requests"))) for p in (base, cur)]
    if all(f is not None and t is not None for f, t in counts):
        (fb, tb), (fc, tc) = counts
        findings.append(check_failed_requests(f"{name}:failed_fraction", int(fb), int(tb), int(fc), int(tc), rules=rules))
    return judge_family(findings, rules)


def _sweep_points(part: Part) -> dict[str, list[float]]:
    rows = frames.read_csv_frame(part.directory / "sweep.csv")
    if "status" in rows.columns:
        rows = rows[rows["status"].astype(str).eq("ok")]
    level = next((c for c in ("load_level", "rate_rps", "concurrency") if c in rows.columns), None)
    keys = [k for k in ("precision", "max_batch_size", level) if k]
    points: dict[str, list[float]] = {}
    if rows.empty or not all(k in rows.columns for k in keys):
        return points
    for key, group in rows.groupby(keys):
        label = ",".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        for metric in ("throughput_rps", "p99_ms"):
            if metric in group.columns:
                points[f"{label}:{metric}"] = [float(v) for v in group[metric] if _number(v) is not None]
    return points


def _sweep_findings(name: str, base: Part, cur: Part) -> list[Finding]:
    b_points, c_points = _sweep_points(base), _sweep_points(cur)
    findings = []
    for point in sorted(set(b_points) & set(c_points)):
        b, c = Rounds(headline=_median(b_points[point])), Rounds(headline=_median(c_points[point]))
        change = (c.centre / b.centre - 1.0) if b.centre and c.centre is not None else None
        findings.append(Finding(f"{name}:{point}", b.centre, c.centre, change, verdict=INCONCLUSIVE,
                                reason=f"{SWEEP_REASON} ({len(b_points[point])} vs {len(c_points[point])} windows)"))
    return findings


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _environment(run_dir: Path) -> dict[str, Any] | None:
    return load_run(run_dir).environment if (run_dir / RUN_FILE).exists() else None


def _environment_warnings(baseline_dir: Path, current_dir: Path) -> list[str]:
    env_a, env_b = _environment(baseline_dir), _environment(current_dir)
    if env_a is None or env_b is None:
        return ["environment fingerprint missing on one side: cannot tell whether the machines match"]
    return [f"environment differs: {d}" for d in fingerprint_differences(env_a, env_b)]


def compare_runs(
    current_dir: str | Path, baseline_dir: str | Path, rules: Rules = Rules(), *,
    history: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Return the comparison of two saved runs: rows (metric, baseline, current, change, verdict, reason,
    test, p-values), regressions, inconclusive metrics, warnings, the rules and the rule's text.

    Raises ValueError for rules out of range.
    """
    rules.validate()
    current, baseline = collect_parts(current_dir), collect_parts(baseline_dir)
    histories = [collect_parts(h) for h in history]
    warnings = _environment_warnings(Path(baseline_dir), Path(current_dir))
    findings: list[Finding] = []
    for path in sorted(set(current) | set(baseline)):
        kinds = {p.kind: p for p in baseline.get(path, [])}
        for cur in current.get(path, []):
            base = kinds.pop(cur.kind, None)
            if base is None:
                warnings.append(f"{path} ({cur.kind}): only in the current run, not compared")
                continue
            past = [p for h in histories for p in h.get(path, []) if p.kind == cur.kind]
            name = _label(path, cur)
            if cur.kind == LOAD:
                findings += _load_findings(name, base, cur, past, rules, warnings)
            elif cur.kind == CHAOS:
                findings += _chaos_findings(name, base, cur, past, rules, warnings)
            else:
                findings += _sweep_findings(name, base, cur)
        warnings += [f"{path} ({kind}): only in the baseline run, not compared" for kind in kinds]
    if not findings:
        warnings.append("no metric is present in both runs: nothing was compared")
    rows = [{**f.to_dict(), "beyond_noise": f.verdict not in ("no change", INCONCLUSIVE)} for f in findings]
    return {
        "baseline": str(baseline_dir), "current": str(current_dir), "history": [str(h) for h in history],
        "rows": rows,
        "regressions": [f"{f.metric}: {f.reason}" for f in findings if f.verdict == REGRESSED],
        "inconclusive": [f"{f.metric}: {f.reason}" for f in findings if f.verdict == INCONCLUSIVE],
        "warnings": warnings, "rules": asdict(rules), "rule": RULE,
    }
