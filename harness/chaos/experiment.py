"""An experiment file and its harness extension: which fault it is, the spec it needs, what it claims.

Chaos Toolkit experiments may carry ``extensions`` (a list of mappings, each with a ``name``); the
harness reads the one named ``"harness"``, which `chaos validate`/`chaos run` ignore::

    "extensions": [{
        "name": "harness",
        "fault": "oom-kill",
        "spec": {"resources": {"limits.memory": "1200Mi"}},
        "expect": {"sequence": ["OOMKilled", "Started", "Ready"], "exit_code": 137},
        "expect_alerts": ["memory-growth"],
        "faults_per_day": 0.2,
        "recovery_timeout_s": 60
    }]

``spec`` is an overlay on the service spec (ServiceSpec fields, Kubernetes spellings): what the fault
needs to mean anything (a memory limit to exceed, a start-up slower than the probes allow). `harness
chaos run` deploys with it; `harness chaos spec EXPERIMENT` prints the merged spec for `harness up
--spec` so plain `chaos run` sees the same deployment. ``expect`` is the platform behaviour the fault
claims, checked against the platform's events (see `harness.chaos.behaviour`). ``expect_alerts``
names the monitoring alerts the fault should raise (`harness.measure.alerts.ALERT_NAMES`): one that
stays silent fails the cell, one not named that fires is a violation (`harness.measure.sla`).
``faults_per_day`` is how often such a fault is expected in production (default: the SLA config's,
one a day); the SLA config's per-fault rate overrides it. It scales one fault's cost to the
projected burn of the error budget.

Drills (rollouts, overload, autoscaling) size their load in requests per second: ``load_rate_per_s``
replaces the profile's background load with open-loop load at that rate (the prober adds its own,
1 / ``prober_interval_s``), and ``topologies`` names the topologies a drill means anything on (an
autoscaler needs ``multi-active``); the matrix runs the others as "not run". ``targets`` names the
systems under test the fault applies to (``reference``, ``command``, ``endpoint``); without it they
follow from its activities (`harness.chaos.fit`), and a run on another target is skipped with the reason.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.config import ServiceSpec
from harness.errors import ConfigError
from harness.platforms.base import EVENT_TYPES
from harness.validation import deep_merge, validate_model

__all__ = [
    "EXTENSION_NAME",
    "ENV_STATE_FILE",
    "ENV_RECOVERY_TIMEOUT_S",
    "ENV_SLO_LATENCY_MS",
    "Expectation",
    "HarnessExtension",
    "Experiment",
    "load_experiment",
    "merge_spec",
    "experiment_files",
]

EXTENSION_NAME = "harness"
ENV_STATE_FILE = "HARNESS_STATE_FILE"  # the experiments' configuration reads the state file path from it
ENV_RECOVERY_TIMEOUT_S = "HARNESS_RECOVERY_TIMEOUT_S"  # and the run's recovery timeout
ENV_SLO_LATENCY_MS = "HARNESS_SLO_LATENCY_MS"  # and the latency SLO its probes judge by



class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Expectation(_Model):
    """The platform behaviour a fault claims, as seen in the platform's events after injection."""

    sequence: list[str] = Field(default_factory=list)  # in this order (others may come between)
    absent: list[str] = Field(default_factory=list)  # none of these on the faulted replica
    exit_code: int | None = None  # some Exited/OOMKilled event carries this exit code
    backoff_growing: bool = False  # at least two BackOff events, delays growing up to the cap
    same_replica: bool = True  # events are looked for on the replica the fault hit

    @field_validator("sequence", "absent")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [kind for kind in value if kind not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}")
        return value


class HarnessExtension(_Model):
    """The ``"harness"`` extension of an experiment file."""

    name: Literal["harness"] = EXTENSION_NAME
    fault: str = Field(pattern=r"^[a-z0-9][-a-z0-9]*$")
    summary: str = ""
    spec: dict[str, Any] = Field(default_factory=dict)
    expect: Expectation = Field(default_factory=Expectation)
    expect_alerts: list[str] = Field(default_factory=list)
    faults_per_day: float | None = Field(None, gt=0, le=1e6)
    recovery_timeout_s: float = Field(60.0, gt=0, le=3600)
    # "running": inject into a deployment that served a steady baseline (the usual case);
    # "deploy": the fault is the start itself (a slow model load), measured from deployment start.
    inject: Literal["running", "deploy"] = "running"
    platforms: list[Literal["local", "kubernetes"]] = Field(default_factory=lambda: ["local"])
    topologies: list[Literal["single", "active-standby", "multi-active"]] = Field(
        default_factory=lambda: ["single", "active-standby", "multi-active"], min_length=1)
    load_rate_per_s: float | None = Field(None, gt=0, le=100_000)
    # the systems under test it applies to (harness.targetspec.TARGET_KINDS); None: derived from its
    # activities (harness.chaos.fit)
    targets: list[Literal["reference", "command", "endpoint"]] | None = Field(None, min_length=1)

    @field_validator("expect_alerts")
    @classmethod
    def _known_alerts(cls, value: list[str]) -> list[str]:
        from harness.measure.alerts import ALERT_NAMES

        unknown = [name for name in value if name not in ALERT_NAMES]
        if unknown:
            raise ValueError(f"unknown alert {unknown[0]!r}; known: {', '.join(ALERT_NAMES)}")
        return value


class Experiment:
    """A loaded, validated experiment file with its harness extension."""

    def __init__(self, path: Path, document: dict[str, Any], extension: HarnessExtension) -> None:
        self.path = path
        self.document = document
        self.extension = extension

    @property
    def name(self) -> str:
        """The experiment's name: its file name without the extension (``pod-kill``)."""
        return self.path.stem

    @property
    def fault(self) -> str:
        return self.extension.fault

    @property
    def title(self) -> str:
        return str(self.document.get("title", self.name))

    def run_document(self) -> dict[str, Any]:
        """Return a deep copy of the document for chaoslib (which edits what it runs)."""
        return copy.deepcopy(self.document)


def load_experiment(path: str | Path, *, validate: bool = True) -> Experiment:
    """Return the experiment at ``path`` (validated by chaoslib unless ``validate`` is False).

    Raises ConfigError for a missing file, an invalid experiment, or a missing/invalid harness
    extension (naming the field, e.g. ``extensions[harness].spec.resources.limits.memory``).
    """
    from harness.chaos.toolkit import load_experiment_file, validate_experiment

    file = Path(path)
    document = load_experiment_file(file)
    if validate:
        validate_experiment(document, source=str(file))
    _refuse_other_spellings(document, source=str(file))
    raw = _find_extension(document, source=str(file))
    extension = validate_model(HarnessExtension, raw, source=str(file)) if raw is not None else None
    if extension is None:
        raise ConfigError("extensions", None, f"no extension named {EXTENSION_NAME!r} (the harness needs its fault name)", source=str(file))
    if extension.spec:
        try:
            merge_spec({}, extension.spec, topology=extension.topologies[0])
        except ConfigError as exc:
            raise ConfigError(f"extensions[harness].spec.{exc.field}", exc.value, exc.reason, source=str(file)) from None
    return Experiment(file, document, extension)


def _refuse_other_spellings(document: Mapping[str, Any], *, source: str) -> None:
    """Raise ConfigError for a harness block where the harness does not read it (it would be ignored silently)."""
    configuration = document.get("configuration")
    for where, holder in (("x-harness", document), ("configuration.x-harness", configuration),
                          ("configuration.harness", configuration)):
        if isinstance(holder, Mapping) and where.rsplit(".", 1)[-1] in holder:
            raise ConfigError(where, "...", "the harness reads its block only from the experiment's \"extensions\" list: "
                              "{\"name\": \"harness\", \"fault\": ..., \"spec\": {...}}", source=source)


def _find_extension(document: Mapping[str, Any], *, source: str) -> dict[str, Any] | None:
    extensions = document.get("extensions") or []
    if not isinstance(extensions, list):
        raise ConfigError("extensions", type(extensions).__name__, "must be a list", source=source)
    for item in extensions:
        if isinstance(item, dict) and item.get("name") == EXTENSION_NAME:
            return item
    return None


def merge_spec(*layers: Mapping[str, Any], topology: str | None = None) -> ServiceSpec:
    """Return the ServiceSpec of the layers merged left to right (nested mappings merge), then ``topology``.

    The layers go on top of the spec's defaults before anything is validated, so an overlay may
    change one field of a probe (``probes.liveness.failureThreshold`` alone). A topology given here
    replaces the replica count with the topology's own. Raises ConfigError.
    """
    # topology and replicas stay out of the base: each is derived from the other when only one is given
    data: dict[str, Any] = ServiceSpec().model_dump(by_alias=True, mode="json", exclude={"topology", "replicas"})
    for layer in layers:
        data = deep_merge(data, layer)
    if topology is not None:
        data["topology"] = topology
        data.pop("replicas", None)
    return validate_model(ServiceSpec, data)


def experiment_files(directory: str | Path) -> list[Path]:
    """Return the experiment files (``*.json``) directly in ``directory``, sorted by name."""
    return sorted(Path(directory).glob("*.json"))
