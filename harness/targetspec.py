"""The system under test of a service spec: the reference service (no ``target``), a user's ``command``
that the local platform runs as replicas, an ``endpoint`` the harness does not deploy, or an existing
Kubernetes ``deployment`` it attaches to (``--platform kubernetes``) and never changes.

In a spec file::

    target:                                   # a command target: the team's own server
      command: ["{venv}/bin/python", "server.py", "--port", "{port}"]
      venv: ../venvs/litserve                 # what {venv} stands for (optional)
      workdir: ../my-server                   # the replicas' working directory (default: the spec's folder)
      env: {MODEL_DIR: /models/tiny}          # on top of the harness's environment
      readiness_path: /health                 # the readiness probe's path (default /v2/health/ready)
      liveness_path: /health                  # the liveness probe's path (default /v2/health/live)
      startup_timeout_s: 120                  # a startup probe: this long to answer before liveness counts
      protocol: {protocol: openai-chat, model: tiny-llm, stream: true}   # what load and prober send (optional)
      fault_hooks: true                       # it serves the harness's fault hooks (/v2/faults; default false)

    target:                                   # an endpoint target: measured, never deployed
      endpoint: http://10.0.0.7:8080
      readiness_path: /health                 # probed to route it (default /v2/health/ready)

    target:                                   # a deployment target: a team's Deployment on a cluster
      deployment: my-llm                      # its name, in --namespace; or (and/or) ...
      selector: "app=my-llm,tier=serving"     # ... a label selector of its pods (default: its own selector)
      port: 8000                              # its container port (default: the pod template's first)
      service: my-llm:80                      # the Service in front: NAME[:PORT] (default: the Deployment's name)

A deployment target's probes are its own, read from its pod template when the harness attaches
(`harness.platforms.kubernetes.attach`); ``readiness_path`` there is only the path the experiments ask
through the Service (default: its readiness probe's path). Its replica count is the Deployment's: the
spec's ``topology`` names the tier it claims, and ``replicas`` is refused. The endpoint is ``--endpoint``,
else ``http://SERVICE.NAMESPACE.svc.cluster.local:PORT``. A ``selector`` is never empty and never only
negative (``app!=x`` alone would select every other pod in the namespace, and pod-kill deletes what it selects).

``protocol`` (`harness.protocolspec.ProtocolSettings`; default: Open Inference Protocol v2 to the spec's
model) is what the load, the prober and the main job send to the target, with its own success rule
(a stream cut mid-response is a failure); a relative ``bodies_file`` or ``dataset`` in it is read from the spec's folder.
``{port}`` (required in a command's argv) is the port the platform picked for the replica, ``{venv}``
the ``venv`` folder and ``{python}`` the harness's own interpreter; they are substituted in argv and
env values alike. **Relative paths** (``venv``,
``workdir``) are resolved against the folder of the spec file they are written in
(`resolve_target_paths`, called where a spec file is read), and against the current directory for
a spec given as data; every path handed down is absolute. A command runs in its ``workdir``, else the
spec file's folder, else the current directory. An endpoint is plain ``http://`` (the local
balancer in front of it, where network faults act, speaks HTTP/1.1 without TLS).

What a target can take from chaos: the reference service has every fault; a command target every
fault that acts outside its process (kill, SIGTERM, freeze, CPU throttling, memory cgroup, network), and
with ``fault_hooks: true`` the faults of the harness's hooks too;
an endpoint target only the network faults in the balancer; a deployment target the pod deletions
of experiments/kubernetes/ (`harness.chaos.fit`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from harness.protocolspec import ProtocolSettings

__all__ = ["TARGET_KINDS", "PORT_PLACEHOLDER", "VENV_PLACEHOLDER", "PYTHON_PLACEHOLDER", "Target", "target_kind", "resolve_target_paths",
           "startup_probe_failures", "target_probes", "fill_probe_paths", "selector_terms", "selector_matches"]

TARGET_KINDS = ("reference", "command", "endpoint", "deployment")
PORT_PLACEHOLDER = "{port}"
VENV_PLACEHOLDER = "{venv}"
PYTHON_PLACEHOLDER = "{python}"  # the interpreter the harness runs on (a server of its own venv uses {venv})
STARTUP_PERIOD_S = 1.0  # a startup timeout becomes a startup probe every this many seconds
_PATH_FIELDS = ("venv", "workdir")
# which kind alone takes a field (a field of another kind given with it is one ConfigError naming it)
_ONLY_COMMAND = ("venv", "workdir", "env", "startup_timeout_s", "liveness_path", "fault_hooks")
_ONLY_DEPLOYMENT = ("port", "service")
_NAME = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"  # a DNS-1123 label: a Service's name
_DEPLOYMENT_NAME = re.compile(rf"^{_NAME}(\.{_NAME})*$")  # a DNS-1123 subdomain: a Deployment's name
_SERVICE = re.compile(rf"^(?P<name>{_NAME})(:(?P<port>[0-9]{{1,5}}))?$")
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^({_NAME}(\.{_NAME})*/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
_SET_TERM = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_POSITIVE = ("=", "in", "exists")  # a selector needs one: the others alone select every other pod


def startup_probe_failures(timeout_s: float) -> int:
    """Return the startup probe's failureThreshold that gives a server ``timeout_s`` to answer."""
    return max(1, math.ceil(timeout_s / STARTUP_PERIOD_S))


class Target(BaseModel):
    """A user's server: exactly one of ``command`` (run here) or ``endpoint`` (measured there)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    venv: Path | None = None
    workdir: Path | None = None
    env: dict[str, str] = Field(default_factory=dict)
    command: list[str] | None = None
    endpoint: str | None = None
    readiness_path: str | None = None
    liveness_path: str | None = None
    startup_timeout_s: float | None = Field(None, gt=0, le=3600)
    protocol: ProtocolSettings | None = None  # what load and prober send; None: oip-v2 to the spec's model
    # the command serves the harness's fault hooks (POST /v2/faults/{kind}, its token from HARNESS_FAULT_TOKEN), as
    # the reference service and the reference generative service (harness.llmservice) do: the experiments that
    # need them run on it (harness.chaos.fit)
    fault_hooks: bool = False
    deployment: str | None = None  # an existing Kubernetes Deployment's name
    selector: str | None = None  # a label selector of its pods (default: the Deployment's own)
    port: int | None = Field(None, ge=1, le=65535)  # its container port (default: its pod template's first)
    service: str | None = None  # the Service in front of it, NAME or NAME:PORT (default: the Deployment's name)

    @field_validator("venv", "workdir")
    @classmethod
    def _existing_dir(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not str(value).strip():
            raise ValueError("an empty path; name a directory")
        path = Path(os.path.expanduser(str(value)))
        path = path if path.is_absolute() else Path.cwd() / path  # a spec file's own were resolved on reading
        path = path.resolve()
        if not path.is_dir():
            raise ValueError(f"no such directory ({path}); a relative path is read from the spec file's folder")
        return path

    @field_validator("command")
    @classmethod
    def _argv(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("an empty argv; give the program and its arguments, e.g. [\"python\", \"server.py\", "
                             "\"--port\", \"{port}\"]")
        if any(not part.strip() for part in value[:1]):
            raise ValueError("the program (argv[0]) is empty")
        if not any(PORT_PLACEHOLDER in part for part in value):
            raise ValueError(f"no {PORT_PLACEHOLDER} placeholder: the server must listen on the port the platform picks "
                             f"(e.g. \"--port\", \"{PORT_PLACEHOLDER}\")")
        if any(VENV_PLACEHOLDER in part for part in value) and info.data.get("venv") is None:
            raise ValueError(f"uses {VENV_PLACEHOLDER} but target.venv is not set")
        return value

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "https":
            raise ValueError("https is not supported: the local balancer in front of it speaks plain HTTP; "
                             "give an http:// address (a TLS-terminating proxy's, for instance)")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("must be an http:// URL with a host, e.g. http://10.0.0.7:8080")
        try:
            parts.port
        except ValueError:
            raise ValueError("the port is not a number from 0 to 65535") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("give the server's root (scheme, host, port) only: the protocol adds the paths")
        return value.rstrip("/")

    @field_validator("deployment")
    @classmethod
    def _deployment_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not _DEPLOYMENT_NAME.match(value)):
            raise ValueError("is not a Deployment name (lower-case letters, digits, '-' and '.'; at most 253)")
        return value

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None:
            selector_terms(value)
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        match = _SERVICE.match(value) if value is not None else None
        if value is not None and (match is None or not 1 <= int(match.group("port") or 1) <= 65535):
            raise ValueError("give the Service as NAME or NAME:PORT (a Service in the namespace; port 1 to 65535), "
                             "or pass --endpoint URL")
        return value

    @field_validator("readiness_path", "liveness_path")
    @classmethod
    def _probe_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> "Target":
        attached = self.deployment is not None or self.selector is not None
        if attached and (self.command is not None or self.endpoint is not None):
            name = "deployment" if self.deployment is not None else "selector"
            raise ValueError(f"{name}={getattr(self, name)}: an existing Kubernetes Deployment takes no command or "
                             f"endpoint; give exactly one of command, endpoint or deployment/selector")
        if not attached and (self.command is None) == (self.endpoint is None):
            both = "both" if self.command is not None else "neither"
            raise ValueError(f"command={both}: give exactly one of command (a server the harness runs), "
                             f"endpoint (a URL it only measures) or deployment/selector (a Kubernetes Deployment it "
                             f"attaches to)")
        if self.kind != "command":
            why = ("an endpoint is not run by the harness" if self.kind == "endpoint" else
                   "a Deployment runs as its own pod template says; its probes are read from it")
            for name in _ONLY_COMMAND:
                if getattr(self, name):
                    value = "..." if name == "env" else getattr(self, name)
                    raise ValueError(f"{name}={value}: only a command target has it ({why})")
        if self.kind != "deployment":
            for name in _ONLY_DEPLOYMENT:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}={getattr(self, name)}: only a deployment target (an existing "
                                     f"Kubernetes Deployment) has it")
        return self

    @property
    def kind(self) -> str:
        """``command``, ``endpoint`` or ``deployment``."""
        if self.deployment is not None or self.selector is not None:
            return "deployment"
        return "command" if self.command is not None else "endpoint"

    def service_address(self, default_name: str, default_port: int) -> tuple[str, int]:
        """Return the (name, port) of a deployment target's Service: ``service``'s, else the defaults."""
        match = _SERVICE.match(self.service) if self.service is not None else None
        if match is None:
            return default_name, default_port
        return match.group("name"), int(match.group("port") or default_port)

    def _substitute(self, text: str, port: int) -> str:
        text = text.replace(PORT_PLACEHOLDER, str(port)).replace(PYTHON_PLACEHOLDER, sys.executable)
        return text.replace(VENV_PLACEHOLDER, str(self.venv)) if self.venv is not None else text

    def argv(self, port: int) -> list[str]:
        """Return the command's argv for a replica on ``port`` (placeholders substituted)."""
        assert self.command is not None
        return [self._substitute(part, port) for part in self.command]

    def environment(self, port: int) -> dict[str, str]:
        """Return the extra environment of a replica on ``port`` (placeholders substituted)."""
        return {key: self._substitute(value, port) for key, value in self.env.items()}

    def endpoint_address(self) -> tuple[str, int]:
        """Return the endpoint's (host, port); port 80 when the URL names none."""
        assert self.endpoint is not None
        parts = urlsplit(self.endpoint)
        return str(parts.hostname), parts.port or 80


def target_kind(target: Target | None) -> str:
    """Return the kind of system under test: ``reference`` (no target), ``command``, ``endpoint`` or ``deployment``."""
    return "reference" if target is None else target.kind


def selector_terms(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Return a Kubernetes label selector as (key, op, values) terms; op is ``=``, ``!=``, ``in``, ``notin``,
    ``exists`` or ``!exists``. Raises ValueError naming the bad term, for an empty selector or one with no
    positive term (it would select every other pod in the namespace)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += (char == "(") - (char == ")")
        current += char
    parts.append(current)
    terms = []
    for part in (item.strip() for item in parts):
        match = _SET_TERM.match(part)
        if not part:
            raise ValueError("an empty selector (or term) would select every pod in the namespace; "
                             "give key=value terms, e.g. app=my-server")
        if match:
            key, op, values = match["key"], match["op"], tuple(v.strip() for v in match["values"].split(","))
        elif "=" in part:
            op = "!=" if "!=" in part else "="
            key, value = part.replace("==", "=", 1).split(op, 1)
            values = (value,)
        else:
            key, op, values = part.lstrip("!"), "!exists" if part.startswith("!") else "exists", ()
        key, values = key.strip(), tuple(v.strip() for v in values)
        if not _LABEL_KEY.match(key):
            raise ValueError(f"{key!r} is not a label key" + (f" (in {part!r})" if key != part else ""))
        bad = [v for v in values if not _LABEL_VALUE.match(v)]
        if bad or (op in ("in", "notin") and not any(values)):
            raise ValueError(f"{part!r} has a value that is not a label value ({', '.join(map(repr, bad)) or 'none'})")
        terms.append((key, op, values))
    if not any(op in _POSITIVE for _, op, _ in terms):
        raise ValueError("selects by what pods lack only, so it would select every other pod in the namespace; "
                         "add a key=value term")
    return terms


def selector_matches(terms: list[tuple[str, str, tuple[str, ...]]], labels: Mapping[str, str]) -> bool:
    """Return True when ``labels`` satisfy every term of a parsed selector (`selector_terms`)."""
    for key, op, values in terms:
        have = labels.get(key)
        if (op in ("=", "in") and have not in values) or (op in ("!=", "notin") and have in values) \
                or (op == "exists" and key not in labels) or (op == "!exists" and key in labels):
            return False
    return True


def target_probes(probes: Any, target: Target, probe_cls: Any) -> Any:
    """Return a copy of ``probes`` (`harness.config.Probes`) with ``target``'s paths; the timings stay the spec's.

    An endpoint target loses liveness and startup (nothing to restart: only readiness routes it); a
    command target's ``startup_timeout_s`` adds a startup probe (every `STARTUP_PERIOD_S`) where the
    spec has none. A deployment target has none here: its probes are its pod template's own.
    """
    probes = probes.model_copy()
    if target.kind == "deployment":
        for kind in ("liveness", "readiness", "startup"):
            object.__setattr__(probes, kind, None)
        return probes
    for kind, path in (("readiness", target.readiness_path), ("liveness", target.liveness_path)):
        probe = getattr(probes, kind)
        if path is not None and probe is not None:
            object.__setattr__(probes, kind, probe.model_copy(update={"path": path}))
    if target.kind == "endpoint":
        object.__setattr__(probes, "liveness", None)
        object.__setattr__(probes, "startup", None)
    elif target.startup_timeout_s is not None and probes.startup is None:
        known = probes.liveness or probes.readiness
        path = target.liveness_path or target.readiness_path or (known.path if known is not None else "/")
        object.__setattr__(probes, "startup", probe_cls(path=path, periodSeconds=STARTUP_PERIOD_S, timeoutSeconds=1,
                                                        failureThreshold=startup_probe_failures(target.startup_timeout_s)))
    return probes


def fill_probe_paths(data: Any) -> Any:
    """Return raw spec ``data`` whose probes given without a ``path`` take the target's (a spec file may give a
    probe's timings only); anything else is returned as it is, for validation to judge."""
    if not isinstance(data, Mapping) or not isinstance(data.get("target"), Mapping) \
            or not isinstance(data.get("probes"), Mapping):
        return data
    probes = dict(data["probes"])
    for kind in ("readiness", "liveness"):
        path = data["target"].get(f"{kind}_path")
        if isinstance(probes.get(kind), Mapping) and "path" not in probes[kind] and path is not None:
            probes[kind] = {**probes[kind], "path": path}
    return {**data, "probes": probes}


def resolve_target_paths(data: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """Return spec ``data`` with its target's relative paths made absolute against ``base_dir`` (the spec
    file's folder), and a command's working directory defaulting to it; anything else is left to validation."""
    out = dict(data)
    target = out.get("target")
    if not isinstance(target, Mapping):
        return out
    target = dict(target)
    for name in _PATH_FIELDS:
        value = target.get(name)
        if isinstance(value, str) and value.strip() and not Path(os.path.expanduser(value)).is_absolute():
            target[name] = str(base_dir / value)
    protocol = target.get("protocol")
    for name in ("bodies_file", "dataset"):  # the protocol's files, read from the spec's folder too
        if isinstance(protocol, Mapping) and isinstance(protocol.get(name), str) and protocol[name].strip() \
                and not Path(os.path.expanduser(protocol[name])).is_absolute():
            protocol = target["protocol"] = {**protocol, name: str(base_dir / protocol[name])}
    if target.get("command") is not None and target.get("endpoint") is None and "workdir" not in target:
        target["workdir"] = str(base_dir)
    out["target"] = target
    return out
