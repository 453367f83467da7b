"""Fixtures for the Kubernetes platform tests.

`fake_apiserver` is a small recording Kubernetes API server on 127.0.0.1 (a port found at run time)
that the real `kubernetes` client and chaostoolkit-kubernetes talk to through a kubeconfig file: it
keeps applied objects, runs a Deployment's pods as a ReplicaSet would (a deleted pod is replaced),
serves events, and records every request so tests can derive the RBAC those requests need.

`checkov_bin` installs checkov once into its own virtualenv (its pins would downgrade packages of
ours), and `cluster_client` finds a configured, reachable cluster or skips saying why.
"""

from __future__ import annotations

import copy
import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = Path(os.environ.get("HARNESS_CHECKOV_VENV", Path.home() / ".cache" / "harness" / f"checkov-{CHECKOV_VERSION}"))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeCluster:
    """The state behind the fake API server; tests may change it directly (under ``lock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, dict] = {}  # API path -> object
        self.pods: dict[str, dict] = {}  # "ns/name" -> pod
        self.events: list[dict] = []
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self._serial = 0

    # -- helpers a test uses ------------------------------------------------------------------------
    def pod_names(self, namespace: str) -> list[str]:
        with self.lock:
            return sorted(p["metadata"]["name"] for k, p in self.pods.items() if k.startswith(f"{namespace}/"))

    def set_container(self, namespace: str, name: str, **changes) -> None:
        """Change a pod's first container status (restartCount, lastState, ready ...)."""
        with self.lock:
            pod = self.pods[f"{namespace}/{name}"]
            status = pod["status"]["containerStatuses"][0]
            status.update(changes)
            ready = "True" if status.get("ready") else "False"
            pod["status"]["conditions"] = [{"type": "Ready", "status": ready}]

    def add_event(self, namespace: str, kind: str, name: str, reason: str, message: str) -> None:
        with self.lock:
            self._event(namespace, kind, name, reason, message)

    # -- what the server does -----------------------------------------------------------------------
    def _event(self, namespace: str, kind: str, name: str, reason: str, message: str) -> None:
        self._serial += 1
        self.events.append({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{self._serial:08x}", "namespace": namespace, "uid": str(uuid.uuid4())},
            "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
            "reason": reason, "message": message, "type": "Normal", "count": 1,
            "firstTimestamp": _now(), "lastTimestamp": _now(),
        })

    def _new_pod(self, deployment: dict) -> None:
        self._serial += 1
        meta = deployment["metadata"]
        template = deployment["spec"]["template"]
        name = f"{meta['name']}-5d9c7b{self._serial:04x}"
        container = template["spec"]["containers"][0]
        self.pods[f"{meta['namespace']}/{name}"] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": meta["namespace"], "uid": str(uuid.uuid4()),
                         "labels": dict(template["metadata"]["labels"]), "creationTimestamp": _now()},
            "spec": {"containers": [{"name": container["name"], "image": container["image"]}]},
            "status": {
                "phase": "Running", "podIP": f"127.0.0.{10 + self._serial % 200}",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
                                       "ready": True, "restartCount": 0, "state": {"running": {"startedAt": _now()}}}],
            },
        }
        self._event(meta["namespace"], "Pod", name, "Scheduled", f"Successfully assigned {meta['namespace']}/{name}")
        self._event(meta["namespace"], "Pod", name, "Started", f"Started container {container['name']}")

    def _reconcile(self, deployment: dict) -> None:
        meta = deployment["metadata"]
        want = deployment["spec"].get("replicas", 1)
        labels = deployment["spec"]["selector"]["matchLabels"]
        mine = [k for k, p in self.pods.items() if k.startswith(f"{meta['namespace']}/") and _matches(p, labels)]
        for key in sorted(mine)[want:]:
            del self.pods[key]
        for _ in range(want - len(mine)):
            self._new_pod(deployment)
        deployment["status"] = {"observedGeneration": meta["generation"], "replicas": want, "updatedReplicas": want,
                                "readyReplicas": want, "availableReplicas": want}

    def handle(self, method: str, url: str, body: object) -> tuple[int, dict]:
        parts = urlsplit(url)
        path, query = parts.path, parse_qs(parts.query)
        with self.lock:
            self.requests.append((method, url))
            if path.rstrip("/") == "/version":
                return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "gitCommit": "0", "gitTreeState": "clean",
                             "buildDate": _now(), "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"}
            segments = path.strip("/").split("/")
            if "pods" in segments:
                return self._pods(method, segments, query)
            if segments[-1] == "events":
                return 200, {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": copy.deepcopy(self.events)}
            if method == "PATCH":
                return self._patch(path, query, body)
            if method == "GET" and path in self.objects:
                return 200, copy.deepcopy(self.objects[path])
            if method == "DELETE" and path in self.objects:
                obj = self.objects.pop(path)
                if obj["kind"] == "Deployment":
                    labels = obj["spec"]["selector"]["matchLabels"]
                    for key in [k for k, p in self.pods.items() if _matches(p, labels)]:
                        del self.pods[key]
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                         "message": f"{path} not found"}

    def _patch(self, path: str, query: dict, body: object) -> tuple[int, dict]:
        if not isinstance(body, dict):
            return 400, {"kind": "Status", "message": "body must be an object", "code": 400}
        if "fieldManager" in query and body.get("kind"):  # server-side apply: create or replace
            obj = copy.deepcopy(body)
            old = self.objects.get(path)
            obj["metadata"]["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
            obj["metadata"]["generation"] = (old["metadata"]["generation"] + 1) if old else 1
        elif path in self.objects:  # a merge patch such as chaosk8s's scale_deployment
            obj = self.objects[path]
            _merge(obj, body)
            obj["metadata"]["generation"] += 1
        else:
            return 404, {"kind": "Status", "message": f"{path} not found", "code": 404}
        self.objects[path] = obj
        if obj.get("kind") == "Deployment":
            self._reconcile(obj)
        return 200, copy.deepcopy(obj)

    def _pods(self, method: str, segments: list[str], query: dict) -> tuple[int, dict]:
        namespace = segments[segments.index("namespaces") + 1]
        name = segments[-1] if segments[-1] != "pods" else None
        if name is None:
            selector = dict(item.split("=", 1) for item in query.get("labelSelector", [""])[0].split(",") if item)
            items = [copy.deepcopy(p) for k, p in sorted(self.pods.items()) if k.startswith(f"{namespace}/") and _matches(p, selector)]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        pod = self.pods.get(f"{namespace}/{name}")
        if pod is None:
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                         "message": f'pods "{name}" not found'}
        if method == "DELETE":
            del self.pods[f"{namespace}/{name}"]
            self._event(namespace, "Pod", name, "Killing", "Stopping container inference")
            for obj in self.objects.values():  # the ReplicaSet replaces it
                if obj.get("kind") == "Deployment" and _matches(pod, obj["spec"]["selector"]["matchLabels"]):
                    self._reconcile(obj)
        return 200, copy.deepcopy(pod)


def _matches(pod: dict, labels: dict) -> bool:
    have = pod["metadata"].get("labels", {})
    return all(have.get(k) == v for k, v in labels.items())


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class _Handler(BaseHTTPRequestHandler):
    cluster: FakeCluster

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = yaml.safe_load(raw) if raw else None  # JSON or apply-patch YAML
        status, payload = self.server.cluster.handle(self.command, self.path, body)  # type: ignore[attr-defined]
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _serve

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def fake_apiserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCluster]:
    """Yield the state of a fake API server that KUBECONFIG points at (no in-cluster env)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.cluster = FakeCluster()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # chaosk8s loads the default kubeconfig location, which kubernetes reads from $KUBECONFIG at
        # import time, into the process-wide default configuration: point both at this server, and
        # put the default configuration back afterwards
        from kubernetes import client as k8s_client
        from kubernetes.config import kube_config

        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        monkeypatch.setattr(k8s_client.Configuration, "_default", copy.copy(k8s_client.Configuration._default))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv("CHAOSTOOLKIT_IN_POD", raising=False)
        monkeypatch.delenv("KUBERNETES_CONTEXT", raising=False)
        yield server.cluster  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _install_checkov() -> Path:
    checkov = CHECKOV_VENV / "bin" / "checkov"
    done = CHECKOV_VENV / ".complete"  # written last: a half-made venv is rebuilt
    if done.exists():
        return checkov
    CHECKOV_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(CHECKOV_VENV.parent / ".checkov.lock", "a") as lock:  # concurrent sessions install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(CHECKOV_VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True, capture_output=True, timeout=120)
            subprocess.run([str(CHECKOV_VENV / "bin" / "pip"), "install", "--quiet", f"checkov=={CHECKOV_VERSION}"],
                           check=True, capture_output=True, timeout=600)
            done.write_text(CHECKOV_VERSION)
    return checkov


@pytest.fixture(scope="session")
def checkov_bin() -> Path:
    """Return the checkov executable, installing it once into its own virtualenv; skip if impossible."""
    try:
        return _install_checkov()
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"checkov {CHECKOV_VERSION} could not be installed into {CHECKOV_VENV}: {exc} {detail[-300:]!r}")
