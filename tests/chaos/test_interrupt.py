"""SIGINT at any point of `harness chaos run` leaves no process, cgroup or fault behind and records
the run as aborted (exit 130)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from .helpers import BIN, ROOT, assert_nothing_left

pytestmark = pytest.mark.chaos
PHASE_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 60


def _interrupt_at(tmp_path, experiment: str, progress_line: str, delay_s: float) -> tuple[int, str, dict]:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [str(BIN / "harness"), "chaos", "run", experiment, "--topology", "single", "--profile", "smoke", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    lines: list[str] = []
    reached = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if progress_line in line:
                reached.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert reached.wait(PHASE_TIMEOUT_S), "".join(lines)
        time.sleep(delay_s)
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole foreground group
        code = proc.wait(EXIT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(5)
        proc.stdout.close()
        proc.stderr.close()
    assert_nothing_left(out, owner_pid=proc.pid)
    return code, "".join(lines), json.loads((out / "result.json").read_text())


def test_interrupt_while_a_fault_is_injected_clears_it_and_tears_down(tmp_path):
    # the readiness delay is injected at once and lasts 6 s; interrupt while the method waits on it
    code, stderr, result = _interrupt_at(tmp_path, "readiness-probe-delay", "running experiment", 1.5)
    assert code == 130, stderr
    assert result["aborted"] is True and result["tier_met"] is False
    assert result["journal_status"] == "interrupted"
    journal = json.loads((tmp_path / "run" / "journal.json").read_text())
    assert journal["run"][0]["status"] == "succeeded"  # the fault was in
    assert [r["output"] for r in journal["rollbacks"]] == [{"reference-0": "cleared"}]  # rollbacks ran anyway
    assert result["faults_cleared"] == {"reference-0": "cleared"}
    run_record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_record["status"] == "aborted"


@pytest.mark.slow
@pytest.mark.parametrize("line, delay_s", [("deploying", 0.5), ("baseline", 0.5), ("measuring recovery", 0.2)])
def test_interrupt_in_any_phase_leaves_nothing(tmp_path, line, delay_s):
    code, stderr, result = _interrupt_at(tmp_path, "pod-kill", line, delay_s)
    assert code == 130, stderr
    assert result["aborted"] is True
