"""A reader that goes away (`harness render | head -1`) ends the command quietly: no traceback, exit 141."""

from __future__ import annotations

import subprocess
import sys


def test_a_closed_stdout_pipe_is_exit_141_without_a_traceback(tmp_path) -> None:
    # render writes its manifests under out/ (relative, in tmp_path) and names each on stdout
    process = subprocess.Popen([sys.executable, "-m", "harness", "render", "--out", "out"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=tmp_path)
    process.stdout.close()  # the reader is gone before the command writes its first line
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141, stderr.decode()
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr
