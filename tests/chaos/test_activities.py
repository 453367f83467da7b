"""The local activities' targeting and error messages, against state files written here; what their signals
reach, on processes started here; the steady-state probe's protocol, against a server on a thread."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from chaoslib.exceptions import ActivityFailed

from harness.chaos import activities, targets


def _state(tmp_path, replicas, **extra):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"endpoint": "http://127.0.0.1:9", "fault_token": "t", "events_path": str(tmp_path / "events.jsonl"),
                                "memory_enforcement": "cgroup-v1", "replicas": replicas, **extra}))
    return str(path)


ROWS = [
    {"name": "r-0", "pid": None, "url": None, "state": "CrashLoopBackOff", "ready": False},
    # started_s 0: whatever process holds these pids now, it is not the replica, so nothing is signalled
    {"name": "r-1", "pid": 4242, "url": "http://127.0.0.1:9", "state": "Running", "ready": True, "started_s": 0.0},
    {"name": "r-2", "pid": 4343, "url": "http://127.0.0.1:9", "state": "Running", "ready": False, "started_s": 0.0},
]


@pytest.fixture(autouse=True)
def _forget_injections():
    targets.last_injection.clear()
    yield
    targets.last_injection.clear()


def test_replicas_are_chosen_by_role_or_name():
    state = {"replicas": ROWS}
    assert [r["name"] for r in targets.select(state, "first-ready")] == ["r-1"]
    assert [r["name"] for r in targets.select(state, "any")] == ["r-1"]
    assert [r["name"] for r in targets.select(state, "r-2")] == ["r-2"]
    assert [r["name"] for r in targets.select(state, "all", allow_all=True)] == ["r-1", "r-2"]
    with pytest.raises(ActivityFailed, match="only accepted by fault and clear actions"):
        targets.select(state, "all")
    with pytest.raises(ActivityFailed, match=r"no replica named 'r-9' \(replicas: r-0 \(CrashLoopBackOff, ready=False\)"):
        targets.select(state, "r-9")
    with pytest.raises(ActivityFailed, match="no action of this run has hit a replica yet"):
        targets.select(state, "injected")
    targets.remember(ROWS[2], "test")
    assert [r["name"] for r in targets.select(state, "injected")] == ["r-2"]
    with pytest.raises(ActivityFailed, match="no Ready replica"):
        targets.select({"replicas": ROWS[:1]}, "first-ready")


def test_signals_by_name_or_number():
    assert targets.signal_number("SIGKILL") == 9 and targets.signal_number("term") == 15 and targets.signal_number(2) == 2
    with pytest.raises(ActivityFailed, match="signal='SIGNOPE': not a signal name"):
        targets.signal_number("SIGNOPE")


def test_errors_are_one_line_activity_failures(tmp_path):
    with pytest.raises(ActivityFailed, match="no deployment state file at"):
        activities.ready_replica_count(str(tmp_path / "missing.json"))
    with pytest.raises(ActivityFailed, match="set HARNESS_STATE_FILE"):
        activities.kill_replica("")
    path = _state(tmp_path, ROWS)
    assert activities.ready_replica_count(path) == 1 and activities.all_replicas_ready(path) is False
    with pytest.raises(ActivityFailed, match="kind='melt': unknown fault"):
        activities.inject_fault(path, "melt")
    with pytest.raises(ActivityFailed, match="probe='deep': must be 'live' or 'ready'"):
        activities.delay_probe(path, probe="deep")
    with pytest.raises(ActivityFailed, match="no action of this run injected a fault yet"):
        activities.wait_for_events(path, ["Ready"], timeout_s=0.1)
    with pytest.raises(ActivityFailed, match="process 4242 is gone|now belongs to another process"):
        activities.kill_replica(path, replica="r-1")


def test_oom_needs_a_memory_cgroup(tmp_path):
    path = _state(tmp_path, ROWS, memory_enforcement="rlimit")
    with pytest.raises(ActivityFailed, match="memory_enforcement='rlimit': limits.memory is not enforced by a cgroup"):
        activities.oom_replica(path)
    path = _state(tmp_path, [{**ROWS[1], "cgroup": str(tmp_path)}])
    with pytest.raises(ActivityFailed, match="has no memory limit in its cgroup"):
        activities.oom_replica(path)
    (tmp_path / "memory.limit_in_bytes").write_text(str(512 * 2**20))
    assert targets.memory_limit_mb({"cgroup": f"/nonexistent,{tmp_path}"}) == 512.0


def test_clearing_never_fails_for_replicas_without_a_process_or_an_answer(tmp_path):
    path = _state(tmp_path, ROWS)
    outcome = activities.clear_faults(path)
    assert set(outcome) == {"r-1", "r-2"}  # r-0 has no address while it backs off
    assert outcome["r-1"].startswith("not reachable") and outcome["r-2"].startswith("not reachable")
    assert activities.clear_faults(_state(tmp_path, [{**ROWS[1], "pid": None}])) == {"r-1": "no process"}


def test_waiting_for_events_judges_what_followed_the_injection(tmp_path):
    path = _state(tmp_path, ROWS)
    now = time.time()
    lines = [
        {"time_s": now - 10, "mono_s": 0, "type": "Killing", "replica": "r-1"},
        {"time_s": now + 0.1, "mono_s": 1, "type": "NotReady", "replica": "r-1"},
        {"time_s": now + 0.2, "mono_s": 2, "type": "Ready", "replica": "r-1"},
    ]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    targets.remember(ROWS[1], "test")
    targets.last_injection["time_s"] = now
    seen = activities.wait_for_events(path, ["NotReady", "Ready"], absent=["Killing"], timeout_s=1)
    assert [e["type"] for e in seen] == ["NotReady", "Ready"]
    with pytest.raises(ActivityFailed, match="no Exited after NotReady -> Ready"):
        activities.wait_for_events(path, ["NotReady", "Ready", "Exited"], timeout_s=0.3)
    # "deployment" looks back to the first event: the earlier Killing counts then
    with pytest.raises(ActivityFailed, match="expected no Killing"):
        activities.wait_for_events(path, ["Ready"], absent=["Killing"], since="deployment", timeout_s=0.3)


def _process_state(tmp_path, proc):
    import psutil

    row = {"name": "r-0", "pid": proc.pid, "url": "http://127.0.0.1:9", "state": "Running", "ready": True,
           "started_s": psutil.Process(proc.pid).create_time()}
    return _state(tmp_path, [row])


def test_freeze_stops_the_process_for_the_duration_then_continues_it(tmp_path):
    import subprocess
    import sys
    import threading

    import psutil

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = _process_state(tmp_path, proc)
        seen = []
        watcher = threading.Timer(0.3, lambda: seen.append(psutil.Process(proc.pid).status()))
        watcher.start()
        out = activities.freeze_replica(path, duration_s=0.6)
        watcher.join()
        assert seen == [psutil.STATUS_STOPPED]  # frozen while the action ran
        assert psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED  # and continued after it
        assert out["replica"] == "r-0" and out["pid"] == proc.pid
        assert out["frozen_s"] == pytest.approx(0.6, abs=0.1) and out["resumed_at_s"] > out["time_s"]
        assert targets.last_injection["action"] == "freeze_replica"
        # a freeze cut short elsewhere (a killed chaos process) is undone by clear_faults
        proc.send_signal(19)  # SIGSTOP
        activities.clear_faults(path)
        time.sleep(0.1)
        assert psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED
    finally:
        proc.kill()
        proc.wait()


def test_kill_and_freeze_reach_every_process_of_a_replica_and_sigterm_its_main_process(tmp_path):
    """A replica leads its own process group (the platform's spawner): a pod kill and a freeze act on all of
    it, as on a container (LitServe's worker processes would otherwise serve on); SIGTERM on its main process."""
    import subprocess
    import sys

    import psutil

    code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, lambda *a: None); "
            "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); print(w.pid, flush=True); "
            "time.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        worker = psutil.Process(int(proc.stdout.readline()))
        path = _process_state(tmp_path, proc)
        seen = []
        watcher = threading.Timer(0.3, lambda: seen.extend(p.status() for p in (psutil.Process(proc.pid), worker)))
        watcher.start()
        activities.freeze_replica(path, duration_s=0.6)
        watcher.join()
        assert seen == [psutil.STATUS_STOPPED] * 2 and worker.status() != psutil.STATUS_STOPPED
        activities.kill_replica(path, signal="SIGTERM")  # the main process alone, which ignores it
        time.sleep(0.3)
        assert worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE
        out = activities.terminate_replica(path, grace_period_s=0.3)  # it ignores SIGTERM: SIGKILL after the grace
        assert out["graceful"] is False
        worker.wait(timeout=5)  # ... to the whole group (psutil.TimeoutExpired if it lived on)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        proc.wait()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    worker = psutil.Process(int(proc.stdout.readline()))
    activities.kill_replica(_process_state(tmp_path, proc))
    assert proc.wait(timeout=5) == -signal.SIGKILL
    worker.wait(timeout=5)


@pytest.mark.parametrize("duration", [0, -1, "3", True, 7200])
def test_freeze_refuses_a_bad_duration(tmp_path, duration):
    with pytest.raises(ActivityFailed, match=f"duration_s={duration!r}: must be a number of seconds"):
        activities.freeze_replica(_state(tmp_path, ROWS), duration_s=duration)


class _TeamServer:
    """A team's server on a thread: POST /predict answers {"prediction": ...}; an OIP v2 model "m" (metadata and
    an infer that checks its tensor); anything else 404, as a real server answers the reference request."""

    def __enter__(self) -> str:
        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                metadata = {"name": "m", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]}
                self._send(200, metadata) if self.path == "/v2/models/m" else self._send(404, {"error": "no"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if self.path == "/predict":
                    return self._send(200, {"prediction": [1.0]})
                tensors = [(t["name"], t["shape"]) for t in body.get("inputs", [])]
                ok = self.path == "/v2/models/m/infer" and tensors == [("x", [1, 3])]
                self._send(200, {"outputs": []}) if ok else self._send(404 if "/m/" not in self.path else 400, {"error": "no"})

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("protocol", [
    {"protocol": "http-json", "path": "/predict", "body_template": '{"features": [$n]}', "success_field": "prediction"},
    {"protocol": "oip-v2", "model": "m"},  # its tensors read from the server's metadata, as the load reads them
])
def test_the_steady_state_probe_speaks_the_protocol_the_state_file_names(tmp_path, protocol):
    with _TeamServer() as url:
        path = _state(tmp_path, ROWS, endpoint=url, protocol=protocol)
        assert activities.endpoint_responds_within(path) is True
        assert activities.availability_over_last(path, seconds=0.3) == 100.0
        wrong = {**protocol, "path": "/nowhere"} if protocol["protocol"] == "http-json" else {**protocol, "model": "n"}
        assert activities.endpoint_responds_within(_state(tmp_path, ROWS, endpoint=url, protocol=wrong)) is False
        # without one, it asks the reference service's question, which a team's server does not answer
        assert activities.endpoint_responds_within(_state(tmp_path, ROWS, endpoint=url)) is False
