"""The result of one load run (Locust or rate-driven): exact figures from its per-request records."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from harness.errors import HarnessError
from harness.load.cpu_sampler import CpuStats
from harness.measure.percentiles import summarize
from harness.processes import log_tail
from harness.request_records import RequestRecord

__all__ = ["LoadResult", "result_from_records", "no_records_error"]


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured: throughput, exact percentiles, errors, the generator's CPU, files."""

    source: str  # "locust" or "rate"
    requests: int
    ok: int
    errors: int
    errors_by_status: dict[str, int]
    duration_s: float
    throughput_rps: float  # successful requests per second
    request_rate_rps: float  # all requests per second
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    generator_cpu: CpuStats
    generator_saturated: bool
    exit_code: int | None
    hard_killed: bool
    started_s: float
    ended_s: float
    paths: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)  # generator-specific: Locust's own counts, lag

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (NaN becomes None)."""
        data = asdict(self)
        data["generator_cpu"] = self.generator_cpu.to_dict()
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def result_from_records(
    records: Iterable[RequestRecord], *, source: str, cpu: CpuStats, exit_code: int | None, hard_killed: bool,
    started_s: float, ended_s: float, paths: dict[str, str], extra: dict[str, object] | None = None,
) -> LoadResult:
    """Return a `LoadResult` summarising ``records`` (exact percentiles via harness.measure.percentiles)."""
    summary = summarize(list(records))
    return LoadResult(
        source=source,
        requests=summary.count,
        ok=summary.ok,
        errors=summary.errors,
        errors_by_status={str(k): v for k, v in summary.errors_by_status.items()},
        duration_s=summary.duration_s,
        throughput_rps=summary.throughput_rps,
        request_rate_rps=summary.request_rate_rps,
        mean_ms=summary.mean_ms,
        p50_ms=summary.p50_ms,
        p95_ms=summary.p95_ms,
        p99_ms=summary.p99_ms,
        max_ms=summary.max_ms,
        generator_cpu=cpu,
        generator_saturated=cpu.saturated,
        exit_code=exit_code,
        hard_killed=hard_killed,
        started_s=started_s,
        ended_s=ended_s,
        paths=paths,
        extra=dict(extra or {}),
    )


def no_records_error(generator: str, requests_path: Path, exit_code: int | None, log_path: Path) -> HarnessError:
    """Return the error of a load generator that recorded no request: a failed run, never an empty success.

    Its first line names the records file (absolute: the generator was handed that path) and the
    generator's exit code; the log's tail follows on the next lines.
    """
    state = "is empty" if requests_path.exists() else "was not written"
    return HarnessError(f"{generator} recorded no request: {requests_path} {state} (exit code {exit_code}); "
                        f"its log {log_path} ends:\n{log_tail(log_path)}")
