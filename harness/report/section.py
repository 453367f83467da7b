"""One part of a report (`Section`) and the helpers every kind of section builds with.

The kinds of sections are built in `harness.report.chaos_sections` (a chaos run, a fault x topology
matrix) and `harness.report.perf_sections` (load, sweep, capacity); `harness.report.sections` finds
the parts of a saved run and builds the section of each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report import charts, frames

__all__ = ["Section", "fmt", "add_figure", "add_telemetry", "frame_of"]


@dataclass
class Section:
    """One part of a report; ``failed`` marks a part whose verdict is a failure."""

    kind: str
    title: str
    path: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    failed: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    inconclusive: bool = False  # the data could not support a verdict either way (not a failure)


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def add_figure(section: Section, caption: str, figure) -> None:
    if figure is not None:
        section.figures.append((caption, charts.to_png(figure)))


def add_telemetry(section: Section, directory: Path, origin_s: float | None = None) -> None:
    telemetry = frames.read_telemetry_frame(directory / "telemetry.csv")
    add_figure(section, "CPU and memory per replica (GPU when present)", charts.telemetry_over_time(telemetry, origin_s))


def frame_of(section: Section, index: int = 0) -> pd.DataFrame:
    """Return a section's table as a DataFrame (for tests and Markdown rendering)."""
    return pd.DataFrame(section.tables[index][1])
