"""Test helper: a stand-in load generator that writes down what it was handed and records nothing.

`hand_over_to_fake` makes `harness.processes.python_argv` (which builds the argv of Locust,
the rate worker and the prober) start a tiny Python program instead. That program writes its working
directory, its arguments and the harness's file-path environment variables to a JSON file, then exits
with the code asked for, so a test can check that a child got absolute paths only and that a run
without records fails.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from harness import processes

PATH_ENV = ("HARNESS_REQUESTS_FILE",)  # the file paths a generator is handed through its environment
_PROGRAM = """
import json, os, sys
seen = {{"cwd": os.getcwd(), "argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in {env!r}}}}}
with open({seen!r}, "w") as handle:
    json.dump(seen, handle)
sys.exit({code})
"""


def hand_over_to_fake(monkeypatch: Any, seen_path: Path, exit_code: int = 0) -> None:
    """Make every generator started through `processes.python_argv` the fake, writing ``seen_path``."""
    program = _PROGRAM.format(env=PATH_ENV, seen=str(seen_path), code=exit_code)
    monkeypatch.setattr(processes, "python_argv", lambda _module, *args: [sys.executable, "-c", program, *args])


def read_seen(seen_path: Path, timeout_s: float = 20.0) -> dict[str, Any]:
    """Return what the fake wrote, waiting up to ``timeout_s`` for it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return json.loads(seen_path.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise AssertionError(f"the fake generator wrote nothing to {seen_path}")


def path_arguments(seen: dict[str, Any]) -> list[str]:
    """Return the arguments and environment values of ``seen`` that name files (they contain a slash)."""
    values = [a for a in seen["argv"] if "/" in a and not a.startswith("http")]
    return values + [v for v in seen["env"].values() if v]
