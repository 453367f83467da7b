"""A small recording Kubernetes API server for tests, and the `fake_apiserver` fixture that starts it.

The real `kubernetes` client and chaostoolkit-kubernetes talk to it on 127.0.0.1 (a port found at
run time) through a kubeconfig file. It keeps applied objects (server-side apply replaces them),
lists namespaced collections with label and field selectors, applies JSON merge patches (RFC 7386:
a null deletes the key) and strategic merge patches (the same, plus lists such as ``containers``
merged by their merge key, as the client sends for a dict body), runs a Deployment's pods as a
ReplicaSet would (a deleted pod is replaced), serves events, and records every request so tests can
derive the RBAC those requests need.

Both the Kubernetes platform tests and the chaos tests use it: their conftests import the fixture.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

__all__ = ["FakeCluster", "PatchError", "merge_patch", "strategic_merge_patch", "fake_apiserver"]

# patchMergeKey of the list fields a patch of our objects can reach (Kubernetes API reference);
# other lists are replaced whole, as in a JSON merge patch
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "volumes": ("name",), "env": ("name",), "imagePullSecrets": ("name",), "volumeMounts": ("mountPath",),
    "conditions": ("type",), "ports": ("containerPort", "port"),  # container ports, Service ports
}
_LIST_KINDS = {"deployments": "DeploymentList", "pods": "PodList", "events": "EventList", "services": "ServiceList"}


class PatchError(ValueError):
    """A patch the fake cannot apply; the API server answers it with 422."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message}


def merge_patch(target: object, patch: object) -> object:
    """Return ``target`` with the JSON merge patch ``patch`` applied (RFC 7386); ``target`` is not changed."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: object, patch: object, field: str = "") -> object:
    """Return ``target`` with the strategic merge patch ``patch`` applied: a JSON merge patch whose
    lists in `_MERGE_KEYS` are merged item by item on their merge key. Raises PatchError on a patch
    directive (``$patch``, ``$setElementOrder`` ...) or a list item without its merge key."""
    if isinstance(patch, list) and field in _MERGE_KEYS and isinstance(target, list):
        return _merge_list(target, patch, field)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            raise PatchError(f"patch directive {key!r} is not supported by the fake API server")
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value, key)
    return result


def _merge_list(target: list, patch: list, field: str) -> list:
    result = copy.deepcopy(target)
    for item in patch:
        key = next((k for k in _MERGE_KEYS[field] if isinstance(item, dict) and k in item), None)
        if key is None:
            raise PatchError(f"{field}: item {item!r} does not contain the merge key {' or '.join(_MERGE_KEYS[field])}")
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if index is None:
            result.append(strategic_merge_patch(None, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _selector(text: str, what: str) -> list[tuple[str, str, str | None]]:
    """Parse an equality-based selector into (key, op, value) terms; op is =, !=, exists or !exists."""
    terms = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if " in " in item or " notin " in item or "(" in item:
            raise PatchError(f"set-based {what} {item!r} is not supported by the fake API server")
        if "!=" in item:
            key, value = item.split("!=", 1)
            terms.append((key.strip(), "!=", value.strip()))
        elif "=" in item:
            key, value = item.replace("==", "=", 1).split("=", 1)
            terms.append((key.strip(), "=", value.strip()))
        elif item.startswith("!"):
            terms.append((item[1:].strip(), "!exists", None))
        else:
            terms.append((item, "exists", None))
    return terms


def _selected(values: dict, terms: list[tuple[str, str, str | None]]) -> bool:
    for key, op, value in terms:
        have = values.get(key)
        if (op == "=" and have != value) or (op == "!=" and have == value) \
                or (op == "exists" and key not in values) or (op == "!exists" and key in values):
            return False
    return True


def _matches(obj: dict, labels: dict) -> bool:
    have = obj["metadata"].get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


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

    def add_deployment(self, deployment: dict) -> str:
        """Create ``deployment`` as its owner would (``kubectl apply``, not the harness) and start its pods
        Ready, as its ReplicaSet would; return its API path."""
        with self.lock:
            obj = copy.deepcopy(deployment)
            meta = obj["metadata"]
            meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=_now())
            path = f"/apis/apps/v1/namespaces/{meta['namespace']}/deployments/{meta['name']}"
            self.objects[path] = obj
            self._reconcile(obj)
            return path

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

    def handle(self, method: str, url: str, body: object, content_type: str = "") -> tuple[int, dict]:
        """Answer one request: return (HTTP status, JSON payload). The request is recorded first."""
        parts = urlsplit(url)
        path, query = parts.path.rstrip("/"), parse_qs(parts.query)
        with self.lock:
            self.requests.append((method, url))
            if path == "/version":
                return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "gitCommit": "0", "gitTreeState": "clean",
                             "buildDate": _now(), "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"}
            segments = path.strip("/").split("/")
            try:
                if "pods" in segments:
                    return self._pods(method, segments, query)
                if segments[-1] == "events":
                    return 200, {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": copy.deepcopy(self.events)}
                if method == "PATCH":
                    return self._patch(path, query, body, content_type.split(";")[0].strip().lower())
                if method == "GET" and path in self.objects:
                    return 200, copy.deepcopy(self.objects[path])
                if method == "GET" and len(segments) >= 5 and segments[-3] == "namespaces":  # .../namespaces/NS/RESOURCE
                    return self._list(path, segments[-1], query)
            except PatchError as exc:
                return _status(422 if method == "PATCH" else 400, "Invalid" if method == "PATCH" else "BadRequest", str(exc))
            if method == "DELETE" and path in self.objects:
                obj = self.objects.pop(path)
                if obj["kind"] == "Deployment":
                    labels = obj["spec"]["selector"]["matchLabels"]
                    for key in [k for k, p in self.pods.items() if _matches(p, labels)]:
                        del self.pods[key]
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            return _status(404, "NotFound", f"{path} not found")

    def _list(self, collection: str, resource: str, query: dict) -> tuple[int, dict]:
        """List the namespaced ``collection`` (e.g. /apis/apps/v1/namespaces/ns/deployments)."""
        labels = _selector(query.get("labelSelector", [""])[0], "label selector")
        fields = _selector(query.get("fieldSelector", [""])[0], "field selector")
        items = []
        for path, obj in sorted(self.objects.items()):
            if path.rsplit("/", 1)[0] != collection:
                continue
            meta = obj["metadata"]
            if _selected(meta.get("labels") or {}, labels) and \
                    _selected({"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}, fields):
                items.append(copy.deepcopy(obj))
        kind = f"{items[0]['kind']}List" if items else _LIST_KINDS.get(resource, "List")
        return 200, {"apiVersion": items[0]["apiVersion"] if items else "v1", "kind": kind, "metadata": {}, "items": items}

    def _patch(self, path: str, query: dict, body: object, content_type: str) -> tuple[int, dict]:
        if not isinstance(body, dict):
            return _status(400, "BadRequest", "body must be an object")
        old = self.objects.get(path)
        if content_type == "application/apply-patch+yaml" or (not content_type and "fieldManager" in query and body.get("kind")):
            obj = copy.deepcopy(body)  # server-side apply: create or replace
            obj["metadata"]["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
            obj["metadata"]["generation"] = (old["metadata"]["generation"] + 1) if old else 1
        elif old is None:
            return _status(404, "NotFound", f"{path} not found")
        elif content_type in ("application/merge-patch+json", ""):
            obj = merge_patch(old, body)
            obj["metadata"]["generation"] += 1
        elif content_type == "application/strategic-merge-patch+json":
            obj = strategic_merge_patch(old, body)
            obj["metadata"]["generation"] += 1
        else:
            return _status(415, "UnsupportedMediaType", f"the fake API server does not apply {content_type!r} patches")
        self.objects[path] = obj
        if obj.get("kind") == "Deployment":
            self._reconcile(obj)
        return 200, copy.deepcopy(obj)

    def _pods(self, method: str, segments: list[str], query: dict) -> tuple[int, dict]:
        namespace = segments[segments.index("namespaces") + 1]
        name = segments[-1] if segments[-1] != "pods" else None
        if name is None:
            labels = _selector(query.get("labelSelector", [""])[0], "label selector")
            fields = _selector(query.get("fieldSelector", [""])[0], "field selector")
            items = [copy.deepcopy(p) for k, p in sorted(self.pods.items()) if k.startswith(f"{namespace}/")
                     and _selected(p["metadata"].get("labels") or {}, labels)
                     and _selected({"metadata.name": p["metadata"]["name"], "metadata.namespace": namespace}, fields)]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        pod = self.pods.get(f"{namespace}/{name}")
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        if method == "DELETE":
            del self.pods[f"{namespace}/{name}"]
            self._event(namespace, "Pod", name, "Killing", "Stopping container inference")
            for obj in self.objects.values():  # the ReplicaSet replaces it
                if obj.get("kind") == "Deployment" and _matches(pod, obj["spec"]["selector"]["matchLabels"]):
                    self._reconcile(obj)
        return 200, copy.deepcopy(pod)


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = yaml.safe_load(raw) if raw else None  # JSON or apply-patch YAML
        cluster: FakeCluster = self.server.cluster  # type: ignore[attr-defined]
        status, payload = cluster.handle(self.command, self.path, body, self.headers.get("Content-Type", ""))
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
