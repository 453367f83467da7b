"""The system under test of a service spec: the reference service (no ``target``), a user's ``command``
that the local platform runs as replicas, or an ``endpoint`` the harness does not deploy.

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

    target:                                   # an endpoint target: measured, never deployed
      endpoint: http://10.0.0.7:8080
      readiness_path: /health                 # probed to route it (default /v2/health/ready)

``protocol`` (`harness.protocolspec.ProtocolSettings`; default: Open Inference Protocol v2 to the spec's
model) is what the load, the prober and the main job send to the target, with its own success rule
(a stream cut mid-response is a failure); a relative ``bodies_file`` in it is read from the spec's folder.
``{port}`` (required in a command's argv) is the port the platform picked for the replica, ``{venv}``
the ``venv`` folder and ``{python}`` the harness's own interpreter; they are substituted in argv and
env values alike. **Relative paths** (``venv``,
``workdir``) are resolved against the folder of the spec file they are written in
(`resolve_target_paths`, called where a spec file is read), and against the current directory for
a spec given as data; every path handed down is absolute. A command runs in its ``workdir``, else the
spec file's folder, else the current directory. An endpoint is plain ``http://`` (the local
balancer in front of it, where network faults act, speaks HTTP/1.1 without TLS).

What a target can take from chaos: the reference service has every fault; a command target every
fault that acts outside its process (kill, SIGTERM, freeze, CPU throttling, memory cgroup, network);
an endpoint target only the network faults in the balancer (`harness.chaos.fit`).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from harness.protocolspec import ProtocolSettings

__all__ = ["TARGET_KINDS", "PORT_PLACEHOLDER", "VENV_PLACEHOLDER", "PYTHON_PLACEHOLDER", "Target", "target_kind", "resolve_target_paths",
           "startup_probe_failures", "target_probes", "fill_probe_paths"]

TARGET_KINDS = ("reference", "command", "endpoint")
PORT_PLACEHOLDER = "{port}"
VENV_PLACEHOLDER = "{venv}"
PYTHON_PLACEHOLDER = "{python}"  # the interpreter the harness runs on (a server of its own venv uses {venv})
STARTUP_PERIOD_S = 1.0  # a startup timeout becomes a startup probe every this many seconds
_PATH_FIELDS = ("venv", "workdir")


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

    @field_validator("readiness_path", "liveness_path")
    @classmethod
    def _probe_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> "Target":
        if (self.command is None) == (self.endpoint is None):
            both = "both" if self.command is not None else "neither"
            raise ValueError(f"command={both}: give exactly one of command (a server the harness runs) or "
                             f"endpoint (a URL it only measures)")
        if self.endpoint is not None:
            for name in ("venv", "workdir", "startup_timeout_s", "liveness_path"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}={getattr(self, name)}: only a command target has it "
                                     f"(an endpoint is not run by the harness)")
            if self.env:
                raise ValueError("env=...: only a command target has it (an endpoint is not run by the harness)")
        return self

    @property
    def kind(self) -> str:
        """``command`` or ``endpoint``."""
        return "command" if self.command is not None else "endpoint"

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
    """Return the kind of system under test: ``reference`` (no target), ``command`` or ``endpoint``."""
    return "reference" if target is None else target.kind


def target_probes(probes: Any, target: Target, probe_cls: Any) -> Any:
    """Return a copy of ``probes`` (`harness.config.Probes`) with ``target``'s paths; the timings stay the spec's.

    An endpoint target loses liveness and startup (nothing to restart: only readiness routes it); a
    command target's ``startup_timeout_s`` adds a startup probe (every `STARTUP_PERIOD_S`) where the
    spec has none.
    """
    probes = probes.model_copy()
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
    if isinstance(protocol, Mapping) and isinstance(protocol.get("bodies_file"), str) and protocol["bodies_file"].strip() \
            and not Path(os.path.expanduser(protocol["bodies_file"])).is_absolute():
        target["protocol"] = {**protocol, "bodies_file": str(base_dir / protocol["bodies_file"])}
    if target.get("command") is not None and target.get("endpoint") is None and "workdir" not in target:
        target["workdir"] = str(base_dir)
    out["target"] = target
    return out
