"""The local platform's two files: the append-only events.jsonl and the atomically replaced state file."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from harness.atomicfile import replace_text
from harness.platforms.base import Event

__all__ = ["EventLog", "write_state_file"]

_log = logging.getLogger("harness.platforms.local")


class EventLog:
    """Appends events to ``path`` (one JSON object per line, flushed at once) and keeps them; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Condition()
        # one deployment per file: a reused workdir starts a fresh log, appended to from then on
        self._file = open(path, "w", encoding="utf-8")
        self._events: list[Event] = []

    def emit(
        self,
        type_: str,
        replica: str | None,
        reason: str = "",
        message: str = "",
        exit_code: int | None = None,
        **extra: Any,
    ) -> Event:
        """Record one event now; return it."""
        event = Event(time.time(), time.monotonic(), type_, replica, reason, message, exit_code, extra)
        line = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()
            self._events.append(event)
            self._lock.notify_all()
        _log.debug("%s %s %s %s", type_, replica or "-", reason, message)
        return event

    def snapshot(self) -> list[Event]:
        """Return the events emitted by this log so far, oldest first."""
        with self._lock:
            return list(self._events)

    def wait_for(self, predicate: Callable[[Event], bool], start: int, timeout_s: float) -> Event | None:
        """Return the first event from index ``start`` on that matches ``predicate``, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            index = start
            while True:
                while index < len(self._events):
                    if predicate(self._events[index]):
                        return self._events[index]
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._lock.wait(remaining)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def write_state_file(path: Path, state: dict[str, Any]) -> None:
    """Replace ``path`` with ``state`` as JSON, atomically (temp file + rename), mode 0600 (it holds a token)."""
    replace_text(path, json.dumps(state, indent=1, default=str), private=True, fsync=False)
