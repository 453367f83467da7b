"""The sweep grid: what to measure (precision x max_batch_size x load level), presets, and the CSV.

Two load modes, as perf_analyzer and Model Analyzer sweep: ``rate`` (open loop: requests on a
schedule at each level, latency from the scheduled send time) and ``concurrency`` (closed loop: that
many clients each sending its next request when the last one answered). A level a service keeps up
with measures its latency, not its capacity: throughput there is the offered load. A configuration's
capacity under the SLO comes from the max-rate search (``search``), which both modes can add.

A `SweepPlan` is validated once, here; points are enumerated grouped by configuration (precision,
max_batch_size) so that one deployment serves every load level of its configuration. ``sweep.csv``
is tidy: one row per point and repeat (measurement window), unit-suffixed columns (`CSV_COLUMNS`),
written row by row as windows complete so an interrupted sweep keeps what finished. A point that
could not be measured still has a row: status ``skipped``, ``timeout`` or ``error`` with the reason.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator

from harness.config import DEFAULT_MODEL, PRECISIONS
from harness.errors import ConfigError
from harness.slo import DEFAULT_MAX_ERROR_RATE, DEFAULT_P99_MS

__all__ = [
    "SWEEP_CSV",
    "SUMMARY_JSON",
    "LOAD_MODES",
    "RATE",
    "CONCURRENCY",
    "PRESETS",
    "CSV_COLUMNS",
    "SweepPlan",
    "PointKey",
    "WindowMeasurement",
    "build_plan",
    "validate_plan",
    "configurations",
    "enumerate_points",
    "SweepCsvWriter",
    "read_sweep_csv",
    "PointOutcome",
    "OK",
    "SKIPPED",
    "TIMEOUT",
    "ERROR",
    "INTERRUPTED",
]

SWEEP_CSV = "sweep.csv"
SUMMARY_JSON = "sweep_summary.json"
RATE = "rate"  # open-loop request rate (latency from the scheduled send time)
CONCURRENCY = "concurrency"  # closed loop: a fixed number of clients, each waiting for its answer
LOAD_MODES = (RATE, CONCURRENCY)
MAX_CONCURRENCY = 1024
CONCURRENCY_LEVELS = (1.0, 4.0, 16.0, 64.0)  # clients, when a concurrency sweep names none

# Point and row statuses.
OK = "ok"  # a measured window
SKIPPED = "skipped"  # the pre-check estimated the point cannot finish in its time bound
TIMEOUT = "timeout"  # the point (or its deployment) ran out of its time bound
ERROR = "error"  # deployment or measurement failed
INTERRUPTED = "interrupted"  # SIGINT arrived before the point ran


@dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep needs to know; build with `build_plan` (preset defaults + overrides)."""

    preset: str = "smoke"  # the named defaults it started from (`PRESETS`)
    model: str = DEFAULT_MODEL
    precisions: tuple[str, ...] = ("fp32", "bf16")
    batch_sizes: tuple[int, ...] = (1, 32)
    load_mode: str = "rate"
    load_levels: tuple[float, ...] = (50.0, 200.0)
    p99_ms: float = DEFAULT_P99_MS
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_queue_delay_ms: float = 50.0
    torch_threads: int = 1
    warmup_s: float = 2.0
    window_s: float = 3.0
    min_windows: int = 3
    max_windows: int = 5
    max_relative_half_width: float = 0.10  # the stability rule's CI half-width, for throughput and p99
    point_budget_s: float = 30.0  # wall-clock bound of one point (warm-up + windows + drain)
    ready_timeout_s: float = 90.0  # bound on one deployment becoming Ready
    request_timeout_s: float = 5.0
    accuracy_samples: int = 8
    accuracy_budget_s: float = 30.0
    search: bool = False  # also search each configuration's max sustainable rate (SLO p99_ms)
    search_budget_s: float = 120.0  # wall-clock bound of one configuration's search
    search_rel_tol: float = 0.05  # the search converges when (lowest fail - highest pass) / lowest fail <= this
    min_good_share: float | None = None  # generative: a probe passes when this share of requests is good (token SLO)
    forward_window_s: float = 0.3  # forward-pass timing: one loop per precision x batch size per round
    forward_rounds: int = 3  # rounds of those loops, interleaved (drift hits every figure alike)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes on a 2-core machine: 2 precisions x 2 batch sizes, each with a bounded max-rate
    # search (the effects come from those), and one light rate all four keep up with, where their
    # latencies are compared. 50 rps is well below the knee of every configuration of ranker-mlp.
    "smoke": dict(load_levels=(50.0,), search=True, search_budget_s=50.0),
    # broader and longer (about 45 minutes on 2 cores): every precision, more batch sizes and rates,
    # tighter stability, and the max-rate search per configuration.
    "nightly": dict(
        precisions=("fp32", "bf16", "fp16"), batch_sizes=(1, 8, 32), load_levels=(25.0, 50.0, 100.0, 200.0, 400.0),
        warmup_s=3.0, window_s=5.0, min_windows=3, max_windows=8, max_relative_half_width=0.05,
        point_budget_s=90.0, accuracy_samples=32, accuracy_budget_s=120.0, search=True, search_budget_s=240.0,
        forward_window_s=1.0, forward_rounds=5,
    ),
}


def validate_plan(plan: SweepPlan) -> SweepPlan:
    """Return ``plan`` if every value is usable; raise ConfigError naming the first bad field and value."""
    from harness.modelnames import MODEL_NAMES

    if plan.preset not in PRESETS:
        raise ConfigError("preset", plan.preset, f"choose one of {', '.join(PRESETS)}")
    if plan.model not in MODEL_NAMES:
        raise ConfigError("model", plan.model, f"unknown model; choose one of {', '.join(MODEL_NAMES)}")
    if not plan.precisions:
        raise ConfigError("precisions", list(plan.precisions), "name at least one precision")
    for precision in plan.precisions:
        if precision not in PRECISIONS:
            raise ConfigError("precisions", precision, f"choose from {', '.join(PRECISIONS)}")
    if not plan.batch_sizes:
        raise ConfigError("batch_sizes", list(plan.batch_sizes), "name at least one batch size")
    for size in plan.batch_sizes:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 4096:
            raise ConfigError("batch_sizes", size, "each must be an integer in [1, 4096]")
    if plan.load_mode not in LOAD_MODES:
        raise ConfigError("load_mode", plan.load_mode, f"choose one of {', '.join(LOAD_MODES)}")
    if not plan.load_levels and not plan.search:
        raise ConfigError("load_levels", list(plan.load_levels), "name at least one load level (or search)")
    for level in plan.load_levels:
        if plan.load_mode == CONCURRENCY:
            if isinstance(level, bool) or not float(level).is_integer() or not 1 <= level <= MAX_CONCURRENCY:
                raise ConfigError("load_levels", level, f"each must be a number of clients in [1, {MAX_CONCURRENCY}]")
        elif not (isinstance(level, (int, float)) and math.isfinite(level) and 0 < level <= 100_000):
            raise ConfigError("load_levels", level, "each must be a request rate in (0, 100000] rps")
    positive = ("p99_ms", "warmup_s", "window_s", "point_budget_s", "ready_timeout_s", "request_timeout_s",
                "accuracy_budget_s", "search_budget_s", "max_relative_half_width", "forward_window_s")
    for name in positive:
        value = getattr(plan, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(name, value, "must be a finite number greater than zero")
    if not 0 <= plan.max_error_rate <= 1:
        raise ConfigError("max_error_rate", plan.max_error_rate, "must lie in [0, 1]")
    if not 0 <= plan.max_queue_delay_ms <= 60_000:
        raise ConfigError("max_queue_delay_ms", plan.max_queue_delay_ms, "must lie in [0, 60000]")
    if not 1 <= plan.torch_threads <= 1024:
        raise ConfigError("torch_threads", plan.torch_threads, "must lie in [1, 1024]")
    if not 2 <= plan.min_windows <= plan.max_windows:
        raise ConfigError("min_windows", plan.min_windows, f"must lie in [2, max_windows={plan.max_windows}]")
    if plan.max_windows > 100:
        raise ConfigError("max_windows", plan.max_windows, "at most 100")
    if plan.min_good_share is not None and not 0 < plan.min_good_share <= 1:
        raise ConfigError("min_good_share", plan.min_good_share, "must lie in (0, 1] (0.9: 90% of requests good)")
    if not 0 < plan.search_rel_tol < 1:
        raise ConfigError("search_rel_tol", plan.search_rel_tol, "must lie in (0, 1)")
    if isinstance(plan.forward_rounds, bool) or not isinstance(plan.forward_rounds, int) or not 1 <= plan.forward_rounds <= 100:
        raise ConfigError("forward_rounds", plan.forward_rounds, "must be an integer in [1, 100]")
    if not 1 <= plan.accuracy_samples <= 1024:
        raise ConfigError("accuracy_samples", plan.accuracy_samples, "must lie in [1, 1024]")
    needed = plan.warmup_s + plan.min_windows * plan.window_s
    if needed > plan.point_budget_s:
        raise ConfigError("point_budget_s", plan.point_budget_s,
                          f"shorter than warm-up + min_windows x window_s = {needed:g} s")
    return plan


def build_plan(preset: str = "smoke", **overrides: Any) -> SweepPlan:
    """Return the validated plan of ``preset`` with ``overrides`` (None values ignored); raise ConfigError."""
    if preset not in PRESETS:
        raise ConfigError("preset", preset, f"choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(SweepPlan)}
    values: dict[str, Any] = dict(PRESETS[preset])
    for name, value in overrides.items():
        if name not in known:
            raise ConfigError(name, value, "unknown sweep setting")
        if value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    if values.get("load_mode") == CONCURRENCY and overrides.get("load_levels") is None:
        values["load_levels"] = CONCURRENCY_LEVELS  # the preset's levels are rates, not clients
    return validate_plan(replace(SweepPlan(preset=preset), **values))


@dataclass(frozen=True, order=True)
class PointKey:
    """One point of the grid."""

    precision: str
    max_batch_size: int
    load_level: float

    @property
    def config(self) -> tuple[str, int]:
        return (self.precision, self.max_batch_size)

    def label(self, mode: str = RATE) -> str:
        if mode == CONCURRENCY:
            return f"{self.precision} batch={self.max_batch_size} concurrency={self.load_level:g}"
        return f"{self.precision} batch={self.max_batch_size} rate={self.load_level:g} rps"


def configurations(plan: SweepPlan) -> list[tuple[str, int]]:
    """Return the (precision, max_batch_size) configurations in sweep order."""
    return [(p, b) for p in plan.precisions for b in plan.batch_sizes]


def enumerate_points(plan: SweepPlan) -> list[PointKey]:
    """Return every point, grouped by configuration, load levels ascending (light load first)."""
    return [PointKey(p, b, float(level)) for p, b in configurations(plan) for level in sorted(plan.load_levels)]


@dataclass(frozen=True)
class WindowMeasurement:
    """What one measurement window measured (NaN where not measured, e.g. GPU metrics without a GPU)."""

    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_rate: float
    requests: int = 0
    sent_rate_rps: float = math.nan
    generator_saturated: bool = False
    backlog_growth: float = math.nan  # latency added per second of sending (harness.measure.overload)
    generator_workers: int = 1  # the load generator's processes (harness.load.rate_workers)
    generator_detail: str = ""  # why the generator was saturated ("" when it was not)
    cpu_percent: float = math.nan  # the service's replicas together; 100 = one core busy
    rss_mb: float = math.nan
    gpu_util_percent: float = math.nan
    gpu_memory_mb: float = math.nan
    started_s: float = math.nan
    duration_s: float = math.nan
    good_share: float = math.nan  # generative: the share of requests meeting the token SLO (harness.measure.tokens)
    goodput_rps: float = math.nan
    ttft_p99_ms: float = math.nan
    itl_p99_ms: float = math.nan


CSV_COLUMNS = (
    "model", "precision", "max_batch_size", "load_mode", "load_level", "rate_rps", "repeat", "started_s",
    "duration_s", "requests", "throughput_rps", "sent_rate_rps", "p50_ms", "p95_ms", "p99_ms", "error_rate",
    "cpu_percent", "rss_mb", "gpu_util_percent", "gpu_memory_mb", "generator_saturated", "status", "reason",
)


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return "" if not math.isfinite(value) else round(value, 6)
    return value


class SweepCsvWriter:
    """Appends rows to ``sweep.csv`` and flushes each one, so a crash or SIGINT keeps every finished row."""

    def __init__(self, path: str | Path, plan: SweepPlan) -> None:
        self.path = Path(path)
        self.plan = plan
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(CSV_COLUMNS)
        self._handle.flush()
        self.rows = 0

    def write(self, key: PointKey, repeat: int, window: WindowMeasurement | None, status: str, reason: str = "") -> None:
        """Write one row: a measured window (status ok), or a point that was not measured (no window)."""
        w = window or WindowMeasurement(math.nan, math.nan, math.nan, math.nan, math.nan)
        row = {
            "model": self.plan.model, "precision": key.precision, "max_batch_size": key.max_batch_size,
            "load_mode": self.plan.load_mode, "load_level": key.load_level,
            "rate_rps": key.load_level if self.plan.load_mode == RATE else math.nan, "repeat": repeat,
            "status": status, "reason": reason, **{f.name: getattr(w, f.name) for f in fields(w)},
        }
        self._writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
        self._handle.flush()
        self.rows += 1

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> "SweepCsvWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_INT_COLUMNS = {"max_batch_size", "repeat", "requests", "generator_saturated"}
_TEXT_COLUMNS = {"model", "precision", "load_mode", "status", "reason"}


def read_sweep_csv(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of a ``sweep.csv`` as dicts with typed values (empty cells as NaN)."""
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            typed: dict[str, Any] = {}
            for name, text in row.items():
                if name in _TEXT_COLUMNS:
                    typed[name] = text
                elif name in _INT_COLUMNS:
                    typed[name] = int(text) if text else 0
                else:
                    typed[name] = float(text) if text else math.nan
            yield typed


@dataclass
class PointOutcome:
    """A finished (or abandoned) point: its status, reason and every measured window."""

    key: PointKey
    status: str
    reason: str = ""
    windows: list[WindowMeasurement] = field(default_factory=list)
    elapsed_s: float = 0.0
    stable: bool = False
