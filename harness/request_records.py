"""Per-request records: one row per load request (`RequestRecord`) and per prober request
(`ProbeSample`), shared by the producers (load generators, prober) and the consumers (measure,
chaos, sweep, report), and their on-disk form (``requests.csv``, ``timeline.csv``). The record of a
whole run (``run.json``) is another thing, `harness.results`.

Per-request data and prober timelines are CSV files with a header (tidy, unit-suffixed columns) so
pandas, spreadsheets and `harness report` read them directly. Times are wall-clock epoch seconds
(``*_s``) so they line up with platform events; latencies are milliseconds (``*_ms``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

__all__ = ["RequestRecord", "ProbeSample", "write_records", "append_records", "read_records", "REQUESTS_FILE", "TIMELINE_FILE"]

REQUESTS_FILE = "requests.csv"  # per-request data of a run
TIMELINE_FILE = "timeline.csv"  # the client-side prober's timeline


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request of a load generator.

    ``intended_s`` is when the request was meant to go out (the schedule, for rate-driven load; the
    same as ``sent_s`` for closed-loop users). ``latency_ms`` runs from ``intended_s`` to the end of
    the response, so queueing in the generator counts (no coordinated omission). ``status`` is the
    HTTP status, 0 when no response came (connection refused/reset, timeout). ``target`` is the host
    the request went to when one generator alternates between several (an interleaved A/B pair);
    empty otherwise.

    The protocol's own fields (`harness.load.protocols`; optional columns: a file without them loads
    with these defaults): ``ttft_ms`` (time to first token), ``tpot_ms`` (time per output token after
    the first), ``output_tokens`` and ``itl_ms`` (every inter-token gap, a ``;``-separated cell) of an
    OpenAI-compatible generation, as `harness.load.protocols.openai` defines them; NaN, 0 and empty
    for a protocol without tokens.
    """

    intended_s: float
    sent_s: float
    latency_ms: float
    status: int
    ok: bool
    error: str = ""
    source: str = "load"  # "locust", "rate", "bench", ...
    target: str = ""
    ttft_ms: float = math.nan
    tpot_ms: float = math.nan
    output_tokens: int = 0
    itl_ms: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class ProbeSample:
    """One request of the client-side prober: when it was sent, whether it succeeded, its latency."""

    t_s: float
    ok: bool
    latency_ms: float
    status: int
    error: str = ""


R = TypeVar("R", RequestRecord, ProbeSample)


def _header(kind: type) -> list[str]:
    return [f.name for f in fields(kind)]


def write_records(path: str | Path, records: Iterable[RequestRecord | ProbeSample], kind: type[R]) -> int:
    """Write ``records`` to a CSV file (replacing it); return how many were written."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        return _write(handle, records, kind, header=True)


def append_records(path: str | Path, records: Iterable[RequestRecord | ProbeSample], kind: type[R]) -> int:
    """Append ``records`` to a CSV file, writing the header if the file is new; return the count."""
    file = Path(path)
    new = not file.exists() or file.stat().st_size == 0
    with open(file, "a", newline="", encoding="utf-8") as handle:
        return _write(handle, records, kind, header=new)


def _write(handle, records, kind, *, header: bool) -> int:
    writer = csv.writer(handle)
    names = _header(kind)  # once per batch: the generators flush thousands of records a second
    if header:
        writer.writerow(names)
    count = 0
    for record in records:
        writer.writerow([_cell(getattr(record, name)) for name in names])
        count += 1
    return count


def _cell(value: object) -> object:
    if isinstance(value, tuple):  # inter-token gaps: microsecond resolution keeps the cell short
        return ";".join(f"{v:.3f}" for v in value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    return value


def _converter(declared: str):
    if declared == "bool":
        return lambda text: text not in ("0", "", "False", "false")
    if declared == "int":
        return int
    if declared == "float":
        return float
    if declared.startswith("tuple"):
        return lambda text: tuple(float(v) for v in text.split(";")) if text else ()
    return lambda text: text or ""


def read_records(path: str | Path, kind: type[R]) -> Iterator[R]:
    """Yield records of ``kind`` from a CSV file written by `write_records`/`append_records`; a column the
    file lacks takes the field's default, a column the kind lacks is skipped."""
    converters = {f.name: _converter(str(f.type)) for f in fields(kind)}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        columns = [(i, name, converters[name]) for i, name in enumerate(header) if name in converters]
        for row in reader:
            yield kind(**{name: convert(row[i] if i < len(row) else "") for i, name, convert in columns})
