"""Ctrl-C in the first moments of a command (imports, argument parsing) ends it with one line and exit 130.

The delays count from the moment the interpreter can run the harness's code: before that (its own
start-up, site-packages' .pth files) a SIGINT is the interpreter's to handle, not ours. That moment is
measured as the quickest of a few bare interpreter starts, so a busy machine does not move the
signal out of the window the test is about.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def startup_s() -> float:
    """Return how long this interpreter takes to start and exit doing nothing (the quickest of three)."""
    times = []
    for _ in range(3):
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
        times.append(time.monotonic() - began)
    return min(times)


@pytest.mark.parametrize("delay_s", [0.05, 0.15, 0.3])
def test_sigint_early_in_a_command_exits_130_with_one_line(tmp_path, startup_s, delay_s):
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "tiny", "--out", str(tmp_path / "out")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(startup_s + delay_s)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1] in ("harness: interrupted", "harness run: interrupted"), err
    # on a quick machine the command may already have begun and said so on its progress lines: those are
    # the only lines allowed before the one that ends it
    assert all(line.startswith("harness run: harness run tiny") for line in lines[:-1]), err
