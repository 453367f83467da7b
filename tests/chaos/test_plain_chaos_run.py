"""A shipped experiment runs with plain `chaos run` against a deployment started by `harness up`."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from harness.platforms.base import read_events

from .helpers import BIN, ROOT, assert_nothing_left, stop

pytestmark = pytest.mark.chaos
UP_READY_TIMEOUT_S = 120
CHAOS_TIMEOUT_S = 150


def test_pod_kill_with_plain_chaos_run_against_harness_up(tmp_path):
    spec = subprocess.run(
        [str(BIN / "harness"), "chaos", "spec", "pod-kill", "--topology", "single", "--profile", "smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    (tmp_path / "spec.yaml").write_text(spec)
    state_file = tmp_path / "deployment" / "state.json"
    up = subprocess.Popen(
        [str(BIN / "harness"), "up", "--spec", str(tmp_path / "spec.yaml"), "--for-s", "300",
         "--workdir", str(tmp_path / "deployment"), "--state-file", str(state_file)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + UP_READY_TIMEOUT_S
        seen = []
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            seen.append(line)
            if line.startswith("ready") or up.poll() is not None:
                break
        assert any(line.startswith("ready") for line in seen), "".join(seen)

        env = {**os.environ, "HARNESS_STATE_FILE": str(state_file), "HARNESS_RECOVERY_TIMEOUT_S": "60"}
        chaos = subprocess.run(
            [str(BIN / "chaos"), "--no-version-check", "--log-file", str(tmp_path / "chaostoolkit.log"), "run",
             "--journal-path", str(tmp_path / "journal.json"), "--rollback-strategy", "always",
             str(ROOT / "experiments" / "pod-kill.json")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=CHAOS_TIMEOUT_S,
        )
        assert chaos.returncode == 0, chaos.stdout[-3000:] + chaos.stderr[-3000:]
        journal = json.loads((tmp_path / "journal.json").read_text())
        assert journal["status"] == "completed" and journal["deviated"] is False
        assert [r["status"] for r in journal["run"]] == ["succeeded"] * len(journal["run"])
        assert journal["rollbacks"][0]["output"] == {"reference-0": "cleared"}
        kill = journal["run"][0]["output"]
        events = [e for e in read_events(tmp_path / "deployment" / "events.jsonl") if e.time_s >= kill["time_s"]]
        kinds = [e.type for e in events]
        assert kinds.index("Exited") < kinds.index("Started") < kinds.index("Ready"), kinds
        assert next(e for e in events if e.type == "Exited").exit_code == 137
    finally:
        stop(up)
        up.stdout.close()
    assert up.returncode == 0
    assert_nothing_left(tmp_path, owner_pid=up.pid)
