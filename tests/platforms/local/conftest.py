"""Fixtures for the local platform's tests: fast specs, and deployments that must leave nothing behind.

Every deployment made through the ``deploy_local`` fixture is closed after its test, and then checked:
no process it started is alive, no port it listened on is still listening, no cgroup it created
exists. A leftover fails the test.
"""

from __future__ import annotations

import copy
import http.client
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from harness.config import ServiceSpec
from harness.platforms import deploy, read_events
from harness.platforms.local import LocalDeployment
from harness.platforms.local.balancer import REPLICA_HEADER
from harness.platforms.local.cgroups import CGROUP_V1, CGROUP_V2, CgroupSet
from harness.service.registry import example_request
from harness.validation import validate_model

_REQUEST = example_request("ranker-mlp")

# Short probe periods and back-off so each test takes seconds; the default model, one torch thread
# per replica because the test machine has two cores shared with everything else.
FAST_SPEC: dict[str, Any] = {
    "service": {"model": "ranker-mlp", "warmup_iters": 1, "torch_threads": 1},
    "probes": {
        # the delay covers the interpreter start before the port is bound, even on a busy machine
        "liveness": {"path": "/v2/health/live", "initialDelaySeconds": 3, "periodSeconds": 0.5, "timeoutSeconds": 1,
                     "failureThreshold": 3},
        "readiness": {"path": "/v2/health/ready", "periodSeconds": 0.25, "timeoutSeconds": 1, "failureThreshold": 1},
    },
    "restart": {"backoff_base_s": 0.5, "backoff_cap_s": 4, "reset_after_s": 120},
    "terminationGracePeriodSeconds": 2,
    "resources": {"limits.memory": "2Gi"},
}

# A stand-in replica for tests about the platform itself rather than the service: a real process
# with a real HTTP port that starts in a fraction of a second.
STUB_COMMAND = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
STUB_PROBES = {
    "liveness": {"path": "/", "periodSeconds": 0.5, "failureThreshold": 3},
    "readiness": {"path": "/", "periodSeconds": 0.2, "failureThreshold": 1},
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _make_spec(**overrides: Any) -> ServiceSpec:
    """Return FAST_SPEC with ``overrides`` merged in (nested dicts merge), validated."""
    return validate_model(ServiceSpec, _merge(FAST_SPEC, overrides))


def _stub_spec(**overrides: Any) -> ServiceSpec:
    """Return a fast spec for the stub replica command (probes on "/")."""
    return _make_spec(**_merge({"probes": STUB_PROBES}, overrides))


def _post_infer(endpoint: str, timeout_s: float = 15.0) -> tuple[int, str | None]:
    """POST one ranker-mlp inference; return (status, answering replica), status 0 if no answer came."""
    address = urlsplit(endpoint)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout_s)
    try:
        connection.request("POST", "/v2/models/ranker-mlp/infer", json.dumps(_REQUEST),
                           {"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader(REPLICA_HEADER)
    except OSError:
        return 0, None
    finally:
        connection.close()


@pytest.fixture
def make_spec():
    """Return a function building a fast spec of the reference service (overrides merge into FAST_SPEC)."""
    return _make_spec


@pytest.fixture
def stub_spec():
    """Return a function building a fast spec for the stub replica (STUB_COMMAND)."""
    return _stub_spec


@pytest.fixture
def post_infer():
    """Return a function sending one inference request: (status, replica that answered)."""
    return _post_infer


def _leftovers(deployment: LocalDeployment) -> list[str]:
    """Return what a closed deployment left behind: live processes, listening ports, cgroup dirs."""
    events = read_events(deployment.events_path)
    pids = {int(e.extra["pid"]) for e in events if e.type == "Started" and "pid" in e.extra}
    if deployment._frontend.proc is not None:
        pids.add(deployment._frontend.proc.pid)
    ports = {int(e.extra["port"]) for e in events if e.type == "Started" and "port" in e.extra}
    if deployment.endpoint:
        ports.add(int(deployment.endpoint.rsplit(":", 1)[1]))
    try:  # the control channel's port (rollouts, scaling)
        control = json.loads(deployment.state_path.read_text()).get("control") or {}
        if control.get("port"):
            ports.add(int(control["port"]))
    except (OSError, ValueError):
        pass
    found = []
    for pid in sorted(pids):
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE and process.ppid() == psutil.Process().pid:
                found.append(f"process {pid} still running: {' '.join(process.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    found += [f"port {port} still listening" for port in sorted(ports & listening)]
    for event in events:
        if event.type == "Scheduled" and event.extra.get("cgroup"):
            for path in event.extra["cgroup"].split(","):
                for directory in (Path(path), Path(path).parent):
                    if directory.exists():
                        found.append(f"cgroup {directory} still exists")
    return sorted(set(found))


@pytest.fixture(scope="session")
def cgroups_writable() -> bool:
    """Return whether this machine lets the harness create memory cgroups."""
    probe = CgroupSet("probe", 2**30, None)
    try:
        return probe.memory_enforcement in (CGROUP_V1, CGROUP_V2)
    finally:
        probe.remove()


@pytest.fixture
def fast_spec_data() -> dict[str, Any]:
    """Return a copy of FAST_SPEC (a spec as YAML would hold it)."""
    return copy.deepcopy(FAST_SPEC)


@pytest.fixture
def leftovers():
    """Return a function listing what a closed deployment left behind (empty when nothing)."""
    return _leftovers


@pytest.fixture
def stub_command(tmp_path: Path) -> list[str]:
    """Return the argv of the stub replica ("{port}" is filled in by the platform), serving an empty dir."""
    www = tmp_path / "www"
    www.mkdir(exist_ok=True)
    return [*STUB_COMMAND, "--directory", str(www)]


@pytest.fixture
def deploy_local(tmp_path: Path):
    """Return a function deploying a spec locally; every deployment is closed and checked for leftovers."""
    made: list[LocalDeployment] = []

    def _deploy(spec: ServiceSpec, **options: Any) -> LocalDeployment:
        workdir = tmp_path / f"deployment-{len(made)}"
        deployment = deploy(spec, workdir=workdir, **options)
        made.append(deployment)
        return deployment

    yield _deploy
    problems = []
    for deployment in made:
        deployment.close()
        problems += _leftovers(deployment)
    assert not problems, "teardown left things behind:\n" + "\n".join(problems)
