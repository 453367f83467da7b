"""What one chaos run is: the experiment, the topology, the preset, the SLA, and where it runs.

`ChaosRunSettings` is what `harness.workflows.chaos.ChaosRun` executes (which CPUs the replicas get
and which the load and prober: `harness.cpus.plan_cpus` with ``restarts``); `check_attachable`
refuses, before anything runs, what an attached Kubernetes Deployment cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.chaos.experiment import Experiment, merge_spec
from harness.chaos.presets import ChaosPreset
from harness.config import ServiceSpec
from harness.errors import ConfigError
from harness.platforms.target import PlatformTarget

__all__ = ["ChaosRunSettings", "check_attachable"]


@dataclass
class ChaosRunSettings:
    """What to run: the experiment, where (the topology, the target), under which preset, judged against which
    tier; the output directory comes with the run's context (`harness.workflows.context.RunContext`)."""

    experiment: Experiment
    topology: str
    preset: ChaosPreset
    spec_data: dict[str, Any] | None = None  # the user's --spec file (replaces the preset's base spec)
    tier: str | None = None  # default: the tier named for the topology
    retry: bool | None = None  # balancer.retry_on_connect_error override
    sla: Any = None  # harness.measure.sla_config.SlaConfig; default tiers when None
    slo_latency_ms: float | None = None  # default: the SLA's p99 threshold
    extra_spec: dict[str, Any] = field(default_factory=dict)
    target: PlatformTarget = field(default_factory=PlatformTarget)  # local (deploy) or kubernetes (attach)

    def spec(self) -> ServiceSpec:
        """Return the spec to deploy: base (preset or --spec), experiment overlay, extras, topology.

        On Kubernetes it is the applied Deployment's spec as it is: the harness attaches and cannot
        change it, so an overlay, another topology or the balancer's retry is a ConfigError.
        """
        if self.topology not in self.experiment.extension.topologies:
            raise ConfigError("topology", self.topology, f"experiment {self.experiment.name} runs on "
                              f"{', '.join(self.experiment.extension.topologies)} (extensions[harness].topologies)",
                              source=str(self.experiment.path))
        if self.target.is_kubernetes:
            return self._attached_spec()
        base = self.spec_data if self.spec_data is not None else self.preset.base_spec
        layers = [base, self.experiment.extension.spec, self.extra_spec, self.target.spec_overlay()]
        if self.retry is not None:
            layers.append({"balancer": {"retry_on_connect_error": self.retry}})
        spec = merge_spec(*layers, topology=self.topology)
        if spec.target_kind == "deployment":  # refused before anything runs, not skipped as a fault it cannot take
            raise ConfigError("--platform", self.target.platform, "a deployment target (an existing Kubernetes "
                              "Deployment) is attached to with --platform kubernetes")
        return spec

    def _attached_spec(self) -> ServiceSpec:
        source = str(self.target.spec_path or "--spec")
        if self.spec_data is None:
            raise ConfigError("--spec", None, "the Kubernetes platform needs the applied service spec", source=source)
        check_attachable(self.experiment, retry=bool(self.retry), extra_spec=self.extra_spec)
        spec = merge_spec(self.spec_data)
        if self.topology != spec.topology:
            raise ConfigError("topology", self.topology, f"the applied Deployment is {spec.topology}; render and apply "
                              f"a {self.topology} spec to test that topology", source=source)
        return spec


def check_attachable(experiment: Experiment, *, retry: bool, extra_spec: dict[str, Any] | None = None) -> None:
    """Raise ConfigError for what an attached Kubernetes Deployment cannot do: an experiment (or extra)
    spec overlay, since the harness does not change what was applied, or the harness balancer's retry."""
    overlay = experiment.extension.spec or extra_spec
    if overlay:
        raise ConfigError("extensions[harness].spec", overlay, "an attached Deployment cannot be changed by the "
                          "harness: use an experiment from experiments/kubernetes/", source=str(experiment.path))
    if retry:
        raise ConfigError("--retry", True, "the Kubernetes Service routes the traffic: there is no harness balancer to retry")
