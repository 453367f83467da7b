"""What a long command shows on stderr while it works: its progress lines, and the heartbeat of a load.

On a terminal the heartbeat is a progress bar redrawn in place once a second; elsewhere (CI logs, a
pipe, ``TERM=dumb``) it is a plain line every few seconds, at most about 60 lines for a long run.
Progress messages are whole lines either way; one arriving while a bar is drawn clears the bar first.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from typing import TextIO

from harness.load.heartbeat import LoadSnapshot, format_snapshot

__all__ = ["ProgressDisplay", "TTY_REFRESH_S", "PLAIN_EVERY_S", "render_bar"]

TTY_REFRESH_S = 1.0  # the bar's redraw
PLAIN_EVERY_S = 5.0  # a plain line at least this far apart ...
PLAIN_MAX_LINES = 60  # ... and further apart for long runs, so a soak of hours stays readable
BAR_WIDTH = 24
_CLEAR = "\r\x1b[K"


def render_bar(snapshot: LoadSnapshot, width: int = BAR_WIDTH) -> str:
    """Return ``[#####-----]  40%  12/30 s | 1,234 req | 98.5 req/s | 0 err | p99 23.4 ms`` for one beat."""
    filled = round(snapshot.fraction * width)
    p99 = "n/a" if snapshot.p99_ms is None else f"{snapshot.p99_ms:.1f} ms"
    return (f"[{'#' * filled}{'-' * (width - filled)}] {snapshot.fraction:4.0%}  "
            f"{snapshot.elapsed_s:.0f}/{snapshot.duration_s:g} s | {snapshot.requests:,} req | "
            f"{snapshot.rate_rps:.1f} req/s | {snapshot.errors:,} err | p99 {p99}")


class ProgressDisplay:
    """A `harness.load.heartbeat.LoadProgress`: ``display(message)`` prints ``<prefix>: message``;
    ``display.beat(snapshot)`` shows the heartbeat as a bar (``tty``) or plain lines. ``tty`` defaults
    to whether ``stream`` is a terminal (and ``TERM`` is not ``dumb``)."""

    def __init__(self, prefix: str, stream: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.prefix = prefix
        self.stream = stream if stream is not None else sys.stderr  # bound once, as harness run's printer is
        if tty is None:
            tty = bool(getattr(self.stream, "isatty", lambda: False)()) and os.environ.get("TERM") != "dumb"
        self.tty = tty
        self.beat_interval_s = TTY_REFRESH_S if tty else PLAIN_EVERY_S
        self._lock = threading.Lock()
        self._bar_shown = False
        self._last_line_s: float | None = None
        self._waiting_said = False

    def __call__(self, message: str) -> None:
        with self._lock:
            self._write(f"{_CLEAR if self._bar_shown else ''}{self.prefix}: {message}\n")
            self._bar_shown = False

    def beat(self, snapshot: LoadSnapshot) -> None:
        with self._lock:
            if self.tty:
                self._draw(snapshot)
            else:
                self._line(snapshot)

    def _draw(self, snapshot: LoadSnapshot) -> None:
        if snapshot.final:  # the command's own summary follows
            if self._bar_shown:
                self._write(_CLEAR)
            self._bar_shown = False
            return
        columns = shutil.get_terminal_size().columns - 1  # a wrapped line could not be redrawn in place
        self._write(_CLEAR + f"{self.prefix} {render_bar(snapshot)}"[:max(columns, 20)])
        self._bar_shown = True

    def _line(self, snapshot: LoadSnapshot) -> None:
        if snapshot.final:  # that load is over: the next one (bench ab measures one per pair) starts afresh
            self._last_line_s, self._waiting_said = None, False
            return
        if snapshot.requests == 0:
            if not self._waiting_said:
                self._waiting_said = True
                self._write(f"{self.prefix}: {format_snapshot(snapshot)}\n")
            return
        every_s = max(PLAIN_EVERY_S, snapshot.duration_s / PLAIN_MAX_LINES)
        if self._last_line_s is not None and snapshot.elapsed_s - self._last_line_s < every_s - 0.5:
            return
        self._last_line_s = snapshot.elapsed_s
        self._write(f"{self.prefix}: {format_snapshot(snapshot)}\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: progress is not worth failing a run
            pass
