"""The heartbeat of a running load: requests, rate, errors and p99 so far, while the load runs.

Both load generators run in their own processes and already append every request to the run's
``requests.csv`` (the locustfile and the rate generator flush about once a second); the heartbeat
reads what they appended since its last look, so Locust stays out of this process and nothing new is
asked of the generators. `run_session` and an interleaved A/B pair (`harness.load.interleave`)
start one through `heartbeat_for` when their progress callback is a `LoadProgress` (it has a
``beat`` method); a display decides how a beat looks (`harness.cli._display`: a bar on a terminal,
plain lines in CI). An observer never breaks the run: a failing read or display is logged.

Figures of a beat (`LoadSnapshot`): ``requests`` recorded so far; ``rate_rps`` those recorded per second
over the last `RATE_WINDOW_S`; ``errors`` the failed ones; ``p99_ms`` the exact 99th percentile of the
successful ones so far (`harness.measure.percentiles`). The run's result.json holds the final figures.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from harness.measure.percentiles import percentile

__all__ = ["HEARTBEAT_INTERVAL_S", "RATE_WINDOW_S", "LoadSnapshot", "LoadProgress", "RequestTail", "Heartbeat",
           "format_snapshot", "heartbeat_for"]

HEARTBEAT_INTERVAL_S = 5.0  # between beats when the display does not say
RATE_WINDOW_S = 5.0  # the rate is over this much of the latest time: the generators flush once a second
_STALE_SLACK_S = 1.0  # a row sent this long before the heartbeat started belongs to an earlier run's file
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadSnapshot:
    """The load so far (see the module's definitions); ``final`` on the last beat, once the load ended."""

    elapsed_s: float  # since the first recorded request was sent (0 until one is)
    duration_s: float  # the profile's planned length
    requests: int
    errors: int
    rate_rps: float
    p99_ms: float | None
    final: bool = False

    @property
    def fraction(self) -> float:
        """Return how much of the planned duration has passed, 0..1."""
        return 0.0 if self.duration_s <= 0 else min(1.0, max(0.0, self.elapsed_s / self.duration_s))


@runtime_checkable
class LoadProgress(Protocol):
    """A progress callback (one line per message) that also shows the heartbeat of a running load."""

    beat_interval_s: float  # how often it wants a beat

    def __call__(self, message: str) -> None: ...

    def beat(self, snapshot: LoadSnapshot) -> None: ...


class RequestTail:
    """Reads the rows appended to a ``requests.csv`` since the last read (send time, latency, ok).

    A file replaced or truncated (a generator starting over) is read again from its start; rows sent
    before ``since_s`` (an earlier run's file, not yet replaced) are skipped; an incomplete last line
    waits for the next read.
    """

    def __init__(self, path: str | Path, since_s: float | None = None) -> None:
        self.path = Path(path)
        self.since_s = since_s
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._columns: tuple[int, int, int] | None = None

    def read_new(self) -> list[tuple[float, float, bool]]:
        """Return the complete rows appended since the last call as (intended_s, latency_ms, ok)."""
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self._offset:
                    self._identity, self._offset, self._columns = (stat.st_dev, stat.st_ino), 0, None
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        return self._parse(chunk[:end].decode("utf-8", errors="replace"))

    def _parse(self, text: str) -> list[tuple[float, float, bool]]:
        rows: list[tuple[float, float, bool]] = []
        try:
            for row in csv.reader(io.StringIO(text)):
                if self._columns is None:
                    try:
                        self._columns = (row.index("intended_s"), row.index("latency_ms"), row.index("ok"))
                    except ValueError:
                        return rows  # not a requests file (yet): nothing to count
                    continue
                try:
                    sent, latency, ok = (row[i] for i in self._columns)
                    record = (float(sent), float(latency), ok not in ("0", "", "False", "false"))
                except (IndexError, ValueError):
                    continue  # a row cut across reads (a quoted line break) is left out of the heartbeat
                if self.since_s is None or record[0] >= self.since_s - _STALE_SLACK_S:
                    rows.append(record)
        except csv.Error:
            pass
        return rows


class Heartbeat:
    """Calls ``on_beat`` with a `LoadSnapshot` every ``interval_s`` from a daemon thread, and once more
    with ``final=True`` when stopped. Use as a context manager around the load, or `start`/`stop`."""

    def __init__(self, requests_path: str | Path | Sequence[str | Path], duration_s: float,
                 on_beat: Callable[[LoadSnapshot], None], *, interval_s: float = HEARTBEAT_INTERVAL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.duration_s = float(duration_s)
        self.interval_s = max(0.05, float(interval_s))
        self._on_beat = on_beat
        self._clock = clock
        started_s = clock()
        paths = [requests_path] if isinstance(requests_path, (str, Path)) else list(requests_path)
        self._tails = [RequestTail(path, since_s=started_s) for path in paths]  # several: each generator process's
        self._first_s: float | None = None
        self._requests = 0
        self._errors = 0
        self._latencies = np.empty(0)  # successful requests' latencies so far, kept sorted
        self._counts: deque[tuple[float, int]] = deque([(started_s, 0)])  # (time, requests) of recent beats
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self, final: bool = False) -> LoadSnapshot:
        """Read what was appended and return the load so far."""
        rows = [row for tail in self._tails for row in tail.read_new()]
        now = self._clock()
        if rows:
            first = min(row[0] for row in rows)
            self._first_s = first if self._first_s is None else min(self._first_s, first)
            self._requests += len(rows)
            self._errors += sum(1 for row in rows if not row[2])
            new = np.array([row[1] for row in rows if row[2] and math.isfinite(row[1])], dtype=float)
            if new.size:  # two sorted runs: a stable (merge) sort joins them in linear time
                self._latencies = np.sort(np.concatenate([self._latencies, np.sort(new)]), kind="stable")
        self._counts.append((now, self._requests))
        while len(self._counts) > 2 and now - self._counts[1][0] >= RATE_WINDOW_S:
            self._counts.popleft()
        then, before = self._counts[0]
        if self._first_s is not None and before == 0:  # not the generator's start-up (Locust's imports take seconds)
            then = max(then, self._first_s)
        rate = (self._requests - before) / (now - then) if now - then > 0 else 0.0
        p99 = percentile(self._latencies, 99.0) if self._latencies.size else None
        return LoadSnapshot(elapsed_s=0.0 if self._first_s is None else max(0.0, now - self._first_s),
                            duration_s=self.duration_s, requests=self._requests, errors=self._errors,
                            rate_rps=rate, p99_ms=p99, final=final)

    def start(self) -> "Heartbeat":
        self._thread = threading.Thread(target=self._run, name="harness-load-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the beats and give the final one (an observer: errors are logged, never raised)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._beat(final=True)

    def __enter__(self) -> "Heartbeat":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat(final=False)

    def _beat(self, final: bool) -> None:
        try:
            self._on_beat(self.snapshot(final=final))
        except Exception as exc:  # noqa: BLE001 - an observer never breaks the run it observes
            log.warning("load heartbeat: %s", exc)


def format_snapshot(snapshot: LoadSnapshot) -> str:
    """Return one plain line: ``12 s of 30 s: 1,234 requests (98.5/s), 0 errors, p99 23.4 ms so far``."""
    if snapshot.requests == 0:
        return f"waiting for the first request ({snapshot.duration_s:g} s planned)"
    p99 = "n/a" if snapshot.p99_ms is None else f"{snapshot.p99_ms:.1f} ms"
    return (f"{snapshot.elapsed_s:.0f} s of {snapshot.duration_s:g} s: {snapshot.requests:,} requests "
            f"({snapshot.rate_rps:.1f}/s), {snapshot.errors:,} errors, p99 {p99} so far")


def heartbeat_for(requests_path: str | Path | Sequence[str | Path], duration_s: float,
                  progress: Callable[[str], None] | None) -> Any:
    """Return a context that beats the load appended to ``requests_path`` (or to each of several: a generator's
    processes) into ``progress``, if it takes beats (a `LoadProgress`: `harness.cli._display.ProgressDisplay`);
    else one that does nothing."""
    if not isinstance(progress, LoadProgress):
        return contextlib.nullcontext()
    return Heartbeat(requests_path, duration_s, progress.beat, interval_s=progress.beat_interval_s)
