"""A team's own server on the local platform: a command target's replicas run with the same probes,
restarts, cgroup limits, balancer and events as the reference service's; an endpoint target is routed
behind the balancer by its readiness alone. Real processes, bounded; the fixture checks nothing is left."""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness.config import load_spec
from harness.platforms.local.balancer import REPLICA_HEADER

from .toy_server import spec_yaml, write_server

pytestmark = pytest.mark.slow


def _get(endpoint: str, path: str, timeout_s: float = 10.0) -> tuple[int, dict, str | None]:
    address = urlsplit(endpoint)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else {}, response.getheader(REPLICA_HEADER)
    finally:
        connection.close()


def _routed(endpoint: str, path: str) -> tuple[int, dict, str | None]:
    """Return the first answer that is not the balancer's 503: Ready reaches it over its pipe a moment after
    the state file (and wait_ready) say so."""
    deadline = time.monotonic() + 5
    while (answer := _get(endpoint, path))[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    return answer


def _spec_file(tmp_path, **options):
    write_server(tmp_path / "server")
    path = tmp_path / "toy.yaml"
    path.write_text(spec_yaml(**options))
    return path


def test_command_replicas_run_in_their_folder_with_their_port_behind_the_balancer_and_restart(tmp_path, deploy_local):
    spec = load_spec(_spec_file(tmp_path, topology="multi-active", replicas=2))
    deployment = deploy_local(spec)
    deployment.wait_ready(timeout_s=30)
    state = json.loads(deployment.state_path.read_text())
    assert state["target"] == "command"
    ports = {row["name"]: row["port"] for row in state["replicas"]}
    _routed(deployment.endpoint, "/info")
    deadline = time.monotonic() + 5  # both replicas routed: each has answered
    answers = [_get(deployment.endpoint, "/info") for _ in range(4)]
    while {replica for _, _, replica in answers} != set(ports) and time.monotonic() < deadline:
        answers.append(_get(deployment.endpoint, "/info"))
    assert {replica for _, _, replica in answers} == set(ports)  # both replicas serve through the balancer
    for status, info, replica in answers:
        assert status == 200 and info["cwd"] == str((tmp_path / "server").resolve())
        assert info["toy_port"] == str(ports[replica])  # {port} in env: the replica's own port
    since = deployment.event_count()
    pid = deployment.kill_replica("toy-0")
    exited = deployment.wait_event("Exited", "toy-0", since=since, timeout_s=10)
    assert exited.exit_code == 137 and exited.extra["pid"] == pid
    deployment.wait_event("Started", "toy-0", since=since, timeout_s=10)
    deployment.wait_event("Ready", "toy-0", since=since, timeout_s=15)
    assert deployment.replica("toy-0").restarts == 1 and deployment.replica("toy-0").pid != pid


def test_a_replicas_worker_processes_end_with_its_main_process(tmp_path, deploy_local):
    """A server of several processes (LitServe's inference worker, uvicorn's workers): when its main process
    dies, what it started goes too, as a container's processes do, never keeping the port or serving on."""
    import psutil

    spec_file = _spec_file(tmp_path)
    server = tmp_path / "server" / "server.py"  # this server starts a worker first, its pid in worker.pid
    server.write_text("import subprocess, sys\nworker = subprocess.Popen([sys.executable, '-c', "
                      "'import time; time.sleep(60)'])\nopen('worker.pid', 'w').write(str(worker.pid))\n"
                      + server.read_text())
    deployment = deploy_local(load_spec(spec_file))
    deployment.wait_ready(timeout_s=30)
    worker = psutil.Process(int((tmp_path / "server" / "worker.pid").read_text()))
    since = deployment.event_count()
    deployment.kill_replica("toy-0")  # SIGKILL to the main process alone
    deployment.wait_event("Exited", "toy-0", since=since, timeout_s=10)
    try:
        worker.wait(timeout=5)  # ended by the platform, not left serving
    except psutil.TimeoutExpired:
        pytest.fail(f"the replica's worker {worker.pid} outlived its main process")
    deployment.wait_event("Ready", "toy-0", since=since, timeout_s=15)  # and the replica restarted as usual


def test_a_command_replica_past_its_memory_limit_is_oom_killed_by_the_kernel(tmp_path, deploy_local, cgroups_writable):
    if not cgroups_writable:
        pytest.skip("this machine does not let the harness create memory cgroups: no kernel OOM kill to see")
    deployment = deploy_local(load_spec(_spec_file(tmp_path, memory="128Mi")))
    deployment.wait_ready(timeout_s=30)
    assert deployment.memory_enforcement.startswith("cgroup")
    since = deployment.event_count()
    with pytest.raises(OSError):  # the connection dies with the process
        _get(f"http://127.0.0.1:{deployment.replica('toy-0').port}", "/hog")
    oom = deployment.wait_event("OOMKilled", "toy-0", since=since, timeout_s=10)
    assert oom.exit_code == 137
    deployment.wait_event("Ready", "toy-0", since=since, timeout_s=15)


def test_a_command_replica_is_oom_killed_through_its_memory_cgroup_from_outside(tmp_path, deploy_local, cgroups_writable):
    from harness.chaos.memlimit import squeeze_memory
    from harness.chaos.targets import last_injection

    if not cgroups_writable:
        pytest.skip("this machine does not let the harness create memory cgroups: no kernel OOM kill to see")
    deployment = deploy_local(load_spec(_spec_file(tmp_path)))
    deployment.wait_ready(timeout_s=30)
    done = threading.Event()

    def load() -> None:  # a server under load needs memory: a new thread's stack, a request's buffers
        while not done.is_set():
            try:
                _get(deployment.endpoint, "/info", timeout_s=2)
            except OSError:
                done.wait(0.05)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    since = deployment.event_count()
    try:
        result = squeeze_memory(str(deployment.state_path), timeout_s=20)
        oom = deployment.wait_event("OOMKilled", "toy-0", since=since, timeout_s=5)
        deployment.wait_event("Ready", "toy-0", since=since, timeout_s=15)
    finally:
        done.set()
        loader.join(5)
        last_injection.clear()
    assert oom.exit_code == 137 and oom.extra["pid"] == result["pid"]
    limit_file = Path(deployment.replica("toy-0").cgroup.split(",")[0])
    limits = [limit_file / name for name in ("memory.limit_in_bytes", "memory.max") if (limit_file / name).exists()]
    assert int(limits[0].read_text()) == 256 * 2**20  # restored before the restarted replica grew


def test_a_command_replica_is_cpu_throttled_through_its_cgroup_quota_and_given_it_back(tmp_path, deploy_local):
    from harness.chaos import cpuquota
    from harness.chaos.targets import last_injection

    spec_file = _spec_file(tmp_path)
    spec_file.write_text(spec_file.read_text().replace("resources: {", "resources: {limits.cpu: '1', "))
    deployment = deploy_local(load_spec(spec_file))
    deployment.wait_ready(timeout_s=30)
    if not deployment.cpu_enforcement.startswith("cgroup"):
        pytest.skip(f"cpu_enforcement={deployment.cpu_enforcement}: no cpu cgroup quota on this machine")
    row = json.loads(deployment.state_path.read_text())["replicas"][0]
    quota, version = cpuquota.quota_file(row)
    before = quota.read_text().split()[0]
    throttling = threading.Thread(target=cpuquota.throttle_cpu, args=(str(deployment.state_path),),
                                  kwargs={"cpu_share": 0.05, "duration_s": 1.0}, daemon=True)
    throttling.start()
    deadline, during = time.monotonic() + 1.0, before
    while during == before and time.monotonic() < deadline:
        time.sleep(0.02)
        during = quota.read_text().split()[0]
    throttling.join(5)
    last_injection.clear()
    assert before == "100000" and during == "5000"  # limits.cpu 1 is a full period; 5% of it while throttled
    assert not throttling.is_alive() and quota.read_text().split()[0] == before


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        data = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_an_endpoint_target_is_routed_while_ready_and_never_run(tmp_path, deploy_local):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    spec_file = tmp_path / "endpoint.yaml"
    spec_file.write_text(f"name: theirs\ntarget:\n  endpoint: {url}\n  readiness_path: /health\n"
                         "probes:\n  readiness: {periodSeconds: 0.2, failureThreshold: 1}\n")
    try:
        deployment = deploy_local(load_spec(spec_file))
        deployment.wait_ready(timeout_s=15)
        row = json.loads(deployment.state_path.read_text())["replicas"][0]
        assert (row["pid"], row["url"], row["cgroup"]) == (None, url, None)
        assert _routed(deployment.endpoint, "/anything") == (200, {"status": "ok"}, "theirs-0")
        since = deployment.event_count()
    finally:
        server.shutdown()
        server.server_close()
    deployment.wait_event("NotReady", "theirs-0", since=since, timeout_s=10)
    assert _get(deployment.endpoint, "/anything")[0] == 503  # no ready endpoint: the balancer says so at once
    assert not [e for e in deployment.events() if e.type in ("Started", "Killing")]
