"""Saved run data -> tidy DataFrames (pure functions; unit-suffixed columns).

Every reader takes a path and returns a DataFrame (empty, with the expected columns, when the file
is absent), so the charts and writers never touch files or parse formats themselves. Times stay
wall-clock epoch seconds (``time_s``) and gain ``t_rel_s`` (seconds from a reference such as the
fault injection) where a chart needs a relative axis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from harness.errors import HarnessError

__all__ = [
    "TIMELINE_COLUMNS",
    "REQUEST_COLUMNS",
    "EVENT_COLUMNS",
    "read_timeline",
    "read_requests",
    "read_events",
    "read_telemetry_frame",
    "read_csv_frame",
    "relative_to",
    "latency_over_time",
    "process_telemetry",
]

TIMELINE_COLUMNS = ["t_s", "ok", "latency_ms", "status", "error"]
REQUEST_COLUMNS = ["intended_s", "sent_s", "latency_ms", "status", "ok", "error", "source", "target"]
EVENT_COLUMNS = ["time_s", "type", "replica", "reason", "message", "exit_code"]
TELEMETRY_COLUMNS = ["time_s", "replica", "pid", "cpu_percent", "rss_mb", "gpu_util_percent",
                     "gpu_memory_used_mb", "gpu_power_w", "gpu_present"]


def _empty(columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="float64") for name in columns})


def read_csv_frame(path: str | Path, columns: Iterable[str] = ()) -> pd.DataFrame:
    """Return a CSV file as a DataFrame (empty with ``columns`` when the file is absent or empty).

    Raises HarnessError naming the file when it exists but cannot be parsed.
    """
    file = Path(path)
    if not file.exists() or file.stat().st_size == 0:
        return _empty(columns)
    try:
        frame = pd.read_csv(file, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise HarnessError(f"{file}: not a readable CSV file: {exc}") from exc
    for name in columns:
        if name not in frame.columns:
            frame[name] = np.nan
    return frame


def _as_bool(series: pd.Series) -> pd.Series:
    return series.astype(str).str.lower().isin(("1", "true", "1.0"))


def _read_records(path: str | Path, columns: list[str], time_column: str) -> pd.DataFrame:
    frame = read_csv_frame(path, columns)
    if frame.empty:
        return frame
    frame["ok"] = _as_bool(frame["ok"])
    frame["error"] = frame["error"].astype("string").fillna("").astype(str)
    return frame.sort_values(time_column, kind="stable").reset_index(drop=True)


def read_timeline(path: str | Path) -> pd.DataFrame:
    """Return the prober timeline (t_s, ok, latency_ms, status, error), sorted by time."""
    return _read_records(path, TIMELINE_COLUMNS, "t_s")


def read_requests(path: str | Path) -> pd.DataFrame:
    """Return per-request records, sorted by intended send time."""
    return _read_records(path, REQUEST_COLUMNS, "intended_s")


def read_events(path: str | Path) -> pd.DataFrame:
    """Return platform events (events.jsonl) as a DataFrame sorted by time; bad lines raise HarnessError."""
    file = Path(path)
    if not file.exists():
        return _empty(EVENT_COLUMNS)
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{file}:{number}: not a JSON event line: {exc.msg}") from exc
    if not rows:
        return _empty(EVENT_COLUMNS)
    frame = pd.DataFrame(rows)
    for name in EVENT_COLUMNS:
        if name not in frame.columns:
            frame[name] = None
    return frame.sort_values("time_s", kind="stable").reset_index(drop=True)


def read_telemetry_frame(path: str | Path) -> pd.DataFrame:
    """Return telemetry rows (process rows and GPU device rows) as a DataFrame."""
    frame = read_csv_frame(path, TELEMETRY_COLUMNS)
    if not frame.empty:
        frame["replica"] = frame["replica"].fillna("").astype(str)
    return frame


def relative_to(frame: pd.DataFrame, column: str, origin_s: float) -> pd.DataFrame:
    """Return a copy of ``frame`` with ``t_rel_s`` = ``frame[column] - origin_s``."""
    out = frame.copy()
    out["t_rel_s"] = out[column].astype(float) - float(origin_s) if not out.empty else pd.Series(dtype="float64")
    return out


def latency_over_time(requests: pd.DataFrame, bucket_s: float = 1.0) -> pd.DataFrame:
    """Return per-bucket throughput and exact p50/p99 of successful requests.

    Columns: t_s (bucket start), requests, errors, throughput_rps, p50_ms, p99_ms.
    """
    columns = ["t_s", "requests", "errors", "throughput_rps", "p50_ms", "p99_ms"]
    if requests.empty:
        return _empty(columns)
    from harness.measure.percentiles import percentile

    start = float(requests["intended_s"].min())
    buckets = np.floor((requests["intended_s"].to_numpy(float) - start) / bucket_s).astype(int)
    rows = []
    for bucket, group in requests.groupby(buckets):
        ok = group[group["ok"]]
        latencies = ok["latency_ms"].to_numpy(float)
        rows.append({
            "t_s": start + bucket * bucket_s,
            "requests": int(len(group)),
            "errors": int((~group["ok"]).sum()),
            "throughput_rps": len(ok) / bucket_s,
            "p50_ms": percentile(latencies, 50) if len(latencies) else np.nan,
            "p99_ms": percentile(latencies, 99) if len(latencies) else np.nan,
        })
    return pd.DataFrame(rows, columns=columns)


def process_telemetry(telemetry: pd.DataFrame) -> pd.DataFrame:
    """Return process rows only (no GPU device rows): time_s, replica, cpu_percent, rss_mb."""
    if telemetry.empty:
        return telemetry
    return telemetry[~telemetry["replica"].str.startswith("gpu:")].reset_index(drop=True)
