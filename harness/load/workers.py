"""What a load generator split over several worker processes shares: exact merging, and saturation judged
per worker and overall.

Both multi-process generators (the open-loop rate generator's shares, `harness.load.rate_workers`, and
Locust's master with its workers, `harness.load.locust_distributed`) leave one records file per worker.
`merge_record_files` merges them into one ``requests.csv`` exactly: every record as its worker wrote it,
ordered by intended send time, no histogram and no rounding on the way (``repr`` of a float reads back
the same float), so the percentiles of the merged file are those of the union of the workers' records.

**Saturated, per worker and overall** (`judge_generator`). A worker is saturated when its own CPU is
(`harness.load.cpu_sampler`: above 90 % of one core in a fifth of the load window) or, for the rate
generator, when it did not keep its share of the schedule. The generator as a whole is saturated
when any worker is, or when the workers together used the cores they could use (their count, or the
CPUs they are pinned to, whichever is fewer: `generator_cores`), or when the merged timeline says the
schedule was not kept. Each finding is said in words (``why``), so a figure the generator limited
says how.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.load.cpu_sampler import SATURATED_PERCENT, CpuStats
from harness.request_records import RequestRecord, read_records, write_records

__all__ = ["WORKERS_DIR", "WorkerLoad", "merge_record_files", "generator_cores", "cpu_finding", "judge_generator",
           "worker_dir"]

WORKERS_DIR = "workers"  # <out>/workers/<index>/: each worker's own records, summary and log


@dataclass(frozen=True)
class WorkerLoad:
    """One worker process of a generator: how many requests it recorded, its CPU, and whether it kept up."""

    index: int
    pid: int
    requests: int
    cpu: CpuStats
    saturated: bool
    why: str = ""  # why it is saturated ("" when it is not)
    extra: dict[str, Any] = field(default_factory=dict)  # generator-specific: a rate worker's schedule lag

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (NaN becomes None)."""
        data = asdict(self)
        data["cpu"] = self.cpu.to_dict()
        data["extra"] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.extra.items()}
        return data


def worker_dir(out: Path, index: int) -> Path:
    """Return (and make) worker ``index``'s own directory under ``out``."""
    path = out / WORKERS_DIR / str(index)
    path.mkdir(parents=True, exist_ok=True)
    return path


def merge_record_files(paths: Iterable[Path], out_path: Path) -> tuple[list[RequestRecord], list[int]]:
    """Merge the workers' records files into ``out_path`` (replaced); return the merged records and how
    many each file held.

    Exact: every record of every file, unchanged, ordered by intended send time (ties keep the files'
    order). A file that is missing (a worker that recorded nothing) adds nothing.
    """
    records: list[RequestRecord] = []
    counts: list[int] = []
    for path in paths:
        before = len(records)
        if Path(path).exists():
            records.extend(read_records(path, RequestRecord))
        counts.append(len(records) - before)
    records.sort(key=lambda r: r.intended_s)
    write_records(out_path, records, RequestRecord)
    return records, counts


def generator_cores(workers: int, cpus: Sequence[int] | None) -> int:
    """Return the most cores ``workers`` processes pinned to ``cpus`` can use (None: every usable CPU)."""
    if cpus:
        available = len(set(cpus))
    else:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(workers, available))


def cpu_finding(cpu: CpuStats, cores: int = 1) -> str:
    """Return why ``cpu`` is saturated, in words ("" when it is not)."""
    if not cpu.saturated:
        return ""
    ceiling = f"{SATURATED_PERCENT * cores:g}% ({cores} core(s))" if cores > 1 else f"{SATURATED_PERCENT:g}% of one core"
    return f"CPU above {ceiling} in {cpu.busy_fraction:.0%} of its samples"


def judge_generator(workers: Sequence[WorkerLoad], overall: CpuStats, cores: int,
                    schedule_finding: str = "") -> tuple[bool, str]:
    """Return (saturated, why) for a generator of ``workers``: saturated when any worker is, when their
    CPU together is (``overall``, of ``cores`` cores), or when ``schedule_finding`` (the merged timeline's
    verdict, "" when kept) says so. ``why`` lists each finding ("" when none)."""
    findings = [f"worker {w.index}: {w.why}" for w in workers if w.saturated]
    together = cpu_finding(overall, cores)
    if together:
        findings.append(f"the {len(workers)} workers together: {together}")
    if schedule_finding:
        findings.append(schedule_finding)
    return bool(findings), "; ".join(findings)
