"""Saved run directories -> report sections (title, text, tables, charts, findings).

`collect_sections(run_dir)` walks a run directory and recognises each part by the files it holds,
so a report can be rebuilt from any saved run (a whole `harness run`, or one `harness load`,
`harness chaos run`, `harness chaos matrix`, `harness sweep` or `harness capacity` output):

- ``result.json`` with an ``experiment`` key: one chaos run (timeline, events, telemetry beside it);
- ``matrix.csv``: a fault x topology matrix (its cells are chaos runs in sub-directories);
- ``result.json`` with ``throughput_rps``: a load run (requests, telemetry beside it);
- ``sweep.csv``: a sweep (``sweep_summary.json`` beside it when present);
- ``capacity.json``: a capacity plan and its check;
- ``max_rate.json``: the max-rate search of a spec's own deployment (an LLM's max goodput rate).

Each kind's section is built in `harness.report.chaos_sections` or `harness.report.perf_sections`;
a section is a `harness.report.section.Section`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness.jsonfile import read_json
from harness.report.chaos_sections import chaos_section, matrix_section
from harness.report.perf_sections import capacity_section, load_section, max_rate_section, sweep_section
from harness.report.section import Section

__all__ = ["collect_sections", "MAX_DEPTH"]

MAX_DEPTH = 4  # how deep the walk looks for parts below the run directory


def _classify(directory: Path, root: Path) -> Section | None:
    result_path = directory / "result.json"
    result = read_json(result_path) if result_path.exists() else None
    if (directory / "matrix.csv").exists():
        return matrix_section(directory, root)
    if isinstance(result, dict) and "experiment" in result:
        return chaos_section(directory, result, root)
    if (directory / "sweep.csv").exists():
        return sweep_section(directory, root)
    if (directory / "capacity.json").exists():
        return capacity_section(directory, root)
    if (directory / "max_rate.json").exists():
        return max_rate_section(directory, root)
    if isinstance(result, dict) and "throughput_rps" in result:
        return load_section(directory, result, root)
    return None


_ORDER: dict[str, int] = {"load": 0, "matrix": 1, "chaos": 2, "sweep": 3, "capacity": 4, "max-rate": 5}


def collect_sections(run_dir: str | Path, on_error: Callable[[Path, Exception], None] | None = None) -> list[Section]:
    """Return the report sections found under ``run_dir``, ordered load, matrix, chaos, sweep, capacity.

    A part whose files cannot be read is reported through ``on_error`` (and skipped) when given;
    otherwise the error propagates.
    """
    root = Path(run_dir)
    found: list[Section] = []
    stack = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        try:
            section = _classify(directory, root)
        except Exception as exc:  # one unreadable part must not hide the rest of the report
            if on_error is None:
                raise
            on_error(directory, exc)
            section = None
        if section is not None:
            found.append(section)
        if depth < MAX_DEPTH:
            stack.extend((child, depth + 1) for child in sorted(directory.iterdir(), reverse=True) if child.is_dir())
    return sorted(found, key=lambda s: (_ORDER.get(s.kind, 9), s.path))

