"""Typed, validated configuration: the reference service's settings and the declarative service spec.

Values are validated once, here, at the boundary (`harness.validation.validate_model`); an invalid
value raises `ConfigError` naming the field (dotted path, Kubernetes spelling where the spec uses it)
and the bad value; resource quantities are read by `harness.quantities`. Precedence
(flag > environment > file > default) is resolved by `resolve_service_config` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from harness.errors import ConfigError
from harness.modelnames import DEFAULT_MODEL
from harness.policies import Autoscaling, RateLimit, Strategy
from harness.quantities import parse_cpu_cores, parse_memory_bytes
from harness.targetspec import Target, fill_probe_paths, resolve_target_paths, target_kind, target_probes
from harness.userfiles import EMPTY_NEEDS, load_mapping
from harness.validation import deep_merge, validate_model

__all__ = [
    "PRECISIONS",
    "TOPOLOGIES",
    "DEFAULT_MODEL",
    "ENV_FAULT_TOKEN",
    "ENV_WEIGHTS_DIR",
    "ServiceConfig",
    "StartFault",
    "Probe",
    "Probes",
    "Resources",
    "RestartPolicy",
    "BalancerConfig",
    "Strategy",
    "RateLimit",
    "Autoscaling",
    "ServiceSpec",
    "Target",
    "default_weights_dir",
    "overlay_spec",
    "ROLLOUT_FIELDS",
    "load_yaml_file",
    "load_spec_data",
    "load_spec",
    "resolve_service_config",
]

PRECISIONS = ("fp32", "fp16", "bf16")
TOPOLOGIES = ("single", "active-standby", "multi-active")
ENV_FAULT_TOKEN = "HARNESS_FAULT_TOKEN"
ENV_WEIGHTS_DIR = "HARNESS_WEIGHTS_DIR"

Precision = Literal["fp32", "fp16", "bf16"]
Topology = Literal["single", "active-standby", "multi-active"]
Device = Literal["auto", "cpu", "cuda"]

# what the message for an empty file asks for ("give at least ...")
_SPEC_NEEDS = "one setting (e.g. 'topology: single'), or leave out the spec for the defaults"
_CONFIG_NEEDS = "one setting (e.g. 'max_batch_size: 32'), or leave out --config for the defaults"


def default_weights_dir() -> Path:
    """Return where generated weights are cached: $HARNESS_WEIGHTS_DIR or ~/.cache/harness/weights."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(env) if env else Path.home() / ".cache" / "harness" / "weights"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class StartFault(_Model):
    """A fault hook active from the start, for as long as the process runs: a deliberately slow or broken
    build (``{"kind": "slow-inference", "params": {"factor": 20}}``), for rollout and overload drills."""

    kind: Literal["slow-inference", "crash"]  # the other kinds are transient by nature
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _valid_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from harness.faultparams import FaultError, validate_fault

        kind = info.data.get("kind")
        if kind is None:
            return value
        try:
            validate_fault(kind, {**value, **({} if kind == "crash" else {"duration_s": 1.0})})
        except FaultError as exc:
            raise ValueError(str(exc)) from None
        return value


class ServiceConfig(_Model):
    """Settings of one reference-service process (`harness serve`)."""

    model: str = DEFAULT_MODEL
    precision: Precision = "fp32"
    device: Device = "auto"
    max_batch_size: int = Field(32, ge=1, le=4096)
    max_queue_delay_ms: float = Field(50.0, ge=0, le=60_000)
    max_queue_size: int = Field(256, ge=1, le=1_000_000)
    max_body_bytes: int = Field(4 * 2**20, ge=1024)
    startup_delay_s: float = Field(0.0, ge=0, le=3600)
    # True: /v2/health/live answers 200 while the model loads (only readiness waits). False: liveness
    # also fails until loaded, like servers that open their endpoint after loading; this is what turns
    # a slow model load into CrashLoopBackOff under a liveness probe without a startup probe.
    live_during_load: bool = True
    warmup_iters: int = Field(2, ge=0, le=100)
    torch_threads: int | None = Field(None, ge=1, le=1024)
    seed: int = Field(0, ge=0)
    weights_dir: Path = Field(default_factory=default_weights_dir)
    fault_token: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    grace_period_s: float = Field(30.0, ge=0, le=3600)
    start_faults: list[StartFault] = Field(default_factory=list, max_length=8)

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from harness.modelnames import MODEL_NAMES

        if value not in MODEL_NAMES:
            raise ValueError(f"unknown model; choose one of {', '.join(MODEL_NAMES)}")
        return value


class Probe(_Model):
    """A Kubernetes probe (HTTP GET), with Kubernetes field names and defaults."""

    path: str
    initial_delay_s: float = Field(0.0, alias="initialDelaySeconds", ge=0)
    period_s: float = Field(10.0, alias="periodSeconds", gt=0)
    timeout_s: float = Field(1.0, alias="timeoutSeconds", gt=0)
    failure_threshold: int = Field(3, alias="failureThreshold", ge=1)
    success_threshold: int = Field(1, alias="successThreshold", ge=1)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


def _default_liveness() -> Probe:
    return Probe(path="/v2/health/live", periodSeconds=2, timeoutSeconds=1, failureThreshold=3)


def _default_readiness() -> Probe:
    return Probe(path="/v2/health/ready", periodSeconds=1, timeoutSeconds=1, failureThreshold=2)


class Probes(_Model):
    """Liveness, readiness and (optional) startup probes."""

    liveness: Probe | None = Field(default_factory=_default_liveness)
    readiness: Probe | None = Field(default_factory=_default_readiness)
    startup: Probe | None = None

    @model_validator(mode="after")
    def _liveness_not_stricter_than_kubernetes(self) -> "Probes":
        if self.liveness is not None and self.liveness.success_threshold != 1:
            raise ValueError(f"liveness.successThreshold={self.liveness.success_threshold!r}: must be 1 (as Kubernetes requires)")
        if self.startup is not None and self.startup.success_threshold != 1:
            raise ValueError(f"startup.successThreshold={self.startup.success_threshold!r}: must be 1 (as Kubernetes requires)")
        return self


class Resources(_Model):
    """Resource limits (and requests, defaulting to the limits) in Kubernetes quantities."""

    limits_memory: str | None = Field("4Gi", alias="limits.memory")
    limits_cpu: str | None = Field(None, alias="limits.cpu")
    requests_memory: str | None = Field(None, alias="requests.memory")
    requests_cpu: str | None = Field(None, alias="requests.cpu")
    gpus: int = Field(0, alias="nvidia.com/gpu", ge=0, le=16)

    @field_validator("limits_memory", "requests_memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            parse_memory_bytes(value)
        return value

    @field_validator("limits_cpu", "requests_cpu")
    @classmethod
    def _cpu(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cpu_cores(value)
        return value

    @property
    def memory_limit_bytes(self) -> int | None:
        return parse_memory_bytes(self.limits_memory) if self.limits_memory else None

    @property
    def cpu_limit_cores(self) -> float | None:
        return parse_cpu_cores(self.limits_cpu) if self.limits_cpu else None


class RestartPolicy(_Model):
    """Restart policy Always with CrashLoopBackOff (Kubernetes: 10 s doubling to 300 s, reset after 10 min)."""

    backoff_base_s: float = Field(10.0, gt=0, le=3600)
    backoff_cap_s: float = Field(300.0, gt=0, le=86400)
    reset_after_s: float = Field(600.0, gt=0, le=86400)

    @model_validator(mode="after")
    def _cap_above_base(self) -> "RestartPolicy":
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError(
                f"backoff_cap_s={self.backoff_cap_s!r}: below backoff_base_s={self.backoff_base_s!r}"
            )
        return self


class BalancerConfig(_Model):
    """The front load balancer (a Kubernetes Service, plus an optional mesh-style retry)."""

    retry_on_connect_error: bool = False
    connect_timeout_s: float = Field(1.0, gt=0, le=60)
    request_timeout_s: float = Field(30.0, gt=0, le=3600)


_TOPOLOGY_REPLICAS = {"single": 1, "active-standby": 2, "multi-active": 2}


class ServiceSpec(_Model):
    """What to deploy: one declarative spec that every platform (local, kubernetes) understands."""

    name: str = Field("reference", pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    topology: Topology = "single"
    replicas: int | None = Field(None, ge=1, le=64)
    probes: Probes = Field(default_factory=Probes)
    resources: Resources = Field(default_factory=Resources)
    termination_grace_period_s: float = Field(30.0, alias="terminationGracePeriodSeconds", ge=0, le=3600)
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    balancer: BalancerConfig = Field(default_factory=BalancerConfig)
    strategy: Strategy = Field(default_factory=Strategy)
    # a rollout that makes no progress (no new replica Ready) for this long has failed (Kubernetes: 600 s)
    progress_deadline_s: float = Field(600.0, alias="progressDeadlineSeconds", gt=0, le=86400)
    rate_limit: RateLimit | None = None
    autoscaling: Autoscaling | None = None
    # the system under test: None is the reference service (`service` above); see harness.targetspec
    target: Target | None = None

    @model_validator(mode="before")
    @classmethod
    def _probe_paths_from_target(cls, data: Any) -> Any:
        return fill_probe_paths(data)  # probes given with timings only take the target's paths

    @model_validator(mode="after")
    def _target_probes(self) -> "ServiceSpec":
        if self.target is not None:  # its probe paths (and startup timeout) become the probes'
            object.__setattr__(self, "probes", target_probes(self.probes, self.target, Probe))
        return self

    @property
    def target_kind(self) -> str:
        """The system under test: ``reference``, ``command``, ``endpoint`` or ``deployment`` (`harness.targetspec`)."""
        return target_kind(self.target)

    @model_validator(mode="after")
    def _replicas_fit_topology(self) -> "ServiceSpec":
        scaling = self.autoscaling
        if self.target is not None and self.target.endpoint is not None:  # its topology: the tier it claims
            if self.replicas not in (None, 1) or scaling is not None:
                raise ValueError(f"replicas={self.replicas}: an endpoint target is one server, never replicated "
                                 f"or scaled by the harness (its topology names the tier it claims)")
            object.__setattr__(self, "replicas", 1)
            return self
        attached = self.target is not None and self.target.kind == "deployment"  # a Deployment that is not ours
        if attached and (scaling is not None or self.replicas not in (None, _TOPOLOGY_REPLICAS[self.topology])):
            name, value = ("autoscaling", "...") if scaling is not None else ("replicas", self.replicas)
            raise ValueError(f"{name}={value}: a deployment target runs the replicas its Deployment says (read from "
                             f"the cluster, scaled by its own autoscaler); its topology names the tier it claims")
        if scaling is not None and self.topology != "multi-active":
            raise ValueError(f"topology={self.topology}: autoscaling needs topology 'multi-active' "
                             f"('{self.topology}' has a fixed replica count)")
        if self.replicas is None:
            default = scaling.min_replicas if scaling is not None else _TOPOLOGY_REPLICAS[self.topology]
            object.__setattr__(self, "replicas", default)
        replicas = self.replicas
        if self.topology == "single" and replicas != 1:
            raise ValueError(f"replicas={replicas!r}: topology 'single' has exactly 1 replica")
        if self.topology == "active-standby" and replicas != 2:
            raise ValueError(f"replicas={replicas!r}: topology 'active-standby' has exactly 2 replicas")
        if scaling is not None:
            if not scaling.min_replicas <= replicas <= scaling.max_replicas:
                raise ValueError(f"replicas={replicas!r}: outside autoscaling's minReplicas={scaling.min_replicas} "
                                 f"to maxReplicas={scaling.max_replicas}")
            if scaling.metric == "cpu" and not (self.resources.requests_cpu or self.resources.limits_cpu):
                raise ValueError("autoscaling.targetCPUUtilizationPercentage="
                                 f"{scaling.target_cpu_utilization_percent!r}: needs resources.requests.cpu "
                                 "(or limits.cpu): utilisation is a share of the request")
        elif self.topology == "multi-active" and replicas < 2:
            raise ValueError(f"replicas={replicas!r}: topology 'multi-active' needs at least 2 replicas "
                             f"(or autoscaling with minReplicas 1)")
        return self

    @property
    def cpu_request_cores(self) -> float | None:
        """The CPU a replica requests (``requests.cpu``, else ``limits.cpu``), in cores; None when neither is set."""
        value = self.resources.requests_cpu or self.resources.limits_cpu
        return parse_cpu_cores(value) if value else None

    @property
    def replica_count(self) -> int:
        assert self.replicas is not None  # filled in by the validator
        return self.replicas


# what a rollout may change: the pod template (the service, its probes, its grace period); the topology,
# replica count, resources (the cgroups are the deployment's) and policies stay the deployment's own
ROLLOUT_FIELDS = ("service", "probes", "terminationGracePeriodSeconds", "termination_grace_period_s")


def overlay_spec(spec: ServiceSpec, overlay: Mapping[str, Any], *, field: str = "overlay") -> ServiceSpec:
    """Return ``spec`` with a rollout's ``overlay`` merged on; raise ConfigError naming ``field.<key>`` for
    a key a rollout cannot change (see `ROLLOUT_FIELDS`) or an invalid value."""
    if not isinstance(overlay, Mapping):
        raise ConfigError(field, overlay, "must be a mapping of spec fields, e.g. {\"service\": {\"seed\": 1}}")
    for key in overlay:
        if key not in ROLLOUT_FIELDS:
            raise ConfigError(f"{field}.{key}", overlay[key], f"a rollout changes only {', '.join(ROLLOUT_FIELDS[:3])} "
                              f"(the pod template); the rest is the deployment's own")
    data = deep_merge(spec.model_dump(by_alias=True, mode="json"), overlay)
    try:
        return validate_model(ServiceSpec, data)
    except ConfigError as exc:
        raise ConfigError(f"{field}.{exc.field}", exc.value, exc.reason) from None


def load_yaml_file(path: str | Path, field: str = "file", *, needs: str = EMPTY_NEEDS) -> dict[str, Any]:
    """Return the mapping in a YAML file, read by `harness.userfiles.load_mapping`.

    Raises ConfigError naming ``field`` and the file, in one line: missing or unreadable, not UTF-8,
    a syntax error (line and column), an alias bomb, empty or only comments (the message asks for
    at least ``needs``), or not a mapping.
    """
    return load_mapping(path, field, needs=needs)


def load_spec_data(path: str | Path) -> dict[str, Any]:
    """Return the raw mapping of a service spec file, not yet validated (an experiment overlays it first).

    A target's relative paths are resolved here, against the file's folder (`harness.targetspec`).
    Raises ConfigError naming ``spec`` and the file, as `load_yaml_file` does.
    """
    data = load_yaml_file(path, "spec", needs=_SPEC_NEEDS)
    return resolve_target_paths(data, Path(path).expanduser().resolve().parent)


def load_spec(path: str | Path | None = None, **overrides: Any) -> ServiceSpec:
    """Return the service spec from a YAML file (or the defaults), with top-level ``overrides`` applied.

    Overrides whose value is None are ignored (an unset CLI flag). Raises ConfigError.
    """
    data: dict[str, Any] = load_spec_data(path) if path is not None else {}
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    if overrides.get("topology") is not None and overrides.get("replicas") is None:
        # a topology chosen on the command line brings its own replica count unless one was given
        data.pop("replicas", None)
    return validate_model(ServiceSpec, data, source=str(path) if path else None)


def resolve_service_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file: str | Path | None = None,
) -> ServiceConfig:
    """Return the service config with precedence flag > environment > file > default; raise ConfigError.

    The environment supplies ``HARNESS_FAULT_TOKEN`` (fault_token) and ``HARNESS_WEIGHTS_DIR``.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = load_yaml_file(file, "config", needs=_CONFIG_NEEDS) if file is not None else {}
    if env.get(ENV_FAULT_TOKEN):
        data["fault_token"] = env[ENV_FAULT_TOKEN]
    if env.get(ENV_WEIGHTS_DIR):
        data["weights_dir"] = env[ENV_WEIGHTS_DIR]
    for key, value in (flags or {}).items():
        if value is not None:
            data[key] = value
    return validate_model(ServiceConfig, data, source=str(file) if file else None)
