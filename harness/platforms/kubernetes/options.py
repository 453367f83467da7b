"""What a Kubernetes render takes besides the service spec, validated at the boundary.

`RenderOptions` holds the image, namespace, the model's measured load time (which sizes the startup
probe), the autoscaling metric and the in-cluster runner's settings. `validate_render_options` raises
`ConfigError` naming the option and its bad value, as the spec's own validation does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from harness import __version__
from harness.config import ServiceSpec
from harness.errors import ConfigError

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_NAMESPACE",
    "MEASURED_LOAD_TIME_S",
    "DEFAULT_RUNNER_COMMAND",
    "RUNNER_SCRIPT",
    "HPA_METRICS",
    "RESULTS_VOLUMES",
    "RenderOptions",
    "validate_render_options",
]

DEFAULT_IMAGE = f"gpu-inference-harness:{__version__}-cpu"
DEFAULT_NAMESPACE = "harness"

# Process start to /v2/health/ready of the default model (ranker-mlp, fp32, CPU, weights already
# generated as in the image): torch import, weight hash check, strict state-dict load and warm-up.
# Measured 1.32, 1.93, 1.94 s on the 2-core development machine while other work shared it, rounded
# up; `harness render --load-time-s` takes a figure measured on the target nodes.
MEASURED_LOAD_TIME_S = 2.0

# The in-cluster nightly run: the main job attached to the applied Deployment (`harness run nightly
# --platform kubernetes`, configured from the runner's environment: HARNESS_SPEC, HARNESS_NAMESPACE,
# HARNESS_ENDPOINT): load with the prober, every experiment in experiments/kubernetes/ under load, and
# the report, into a timestamped folder on the results volume. Its exit code is the Job's: 0 every
# verdict passed, 1 a verdict failed, 3 a stage could not run.
RUNNER_SCRIPT = 'exec harness run nightly --platform kubernetes --out "/results/$(date -u +%Y%m%dT%H%M%SZ)"'
DEFAULT_RUNNER_COMMAND: tuple[str, ...] = ("sh", "-c", RUNNER_SCRIPT)

HPA_METRICS = ("cpu", "rps")
RESULTS_VOLUMES = ("pvc", "emptyDir")

# A DNS-1123 label: what Kubernetes accepts as a namespace name.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# registry/path:tag or registry/path@sha256:digest; a tag or a digest is required (no implicit latest).
_IMAGE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")


@dataclass(frozen=True)
class RenderOptions:
    """How to render a spec for Kubernetes, beyond the spec itself."""

    image: str = DEFAULT_IMAGE
    namespace: str = DEFAULT_NAMESPACE
    load_time_s: float = MEASURED_LOAD_TIME_S
    hpa_metric: Literal["cpu", "rps"] = "cpu"
    max_replicas: int | None = None  # HPA ceiling; default twice the spec's replicas
    runner: bool = False  # also render the in-cluster runner (Job, RBAC, results volume)
    schedule: str | None = None  # cron schedule: also render a CronJob (implies runner)
    results_volume: Literal["pvc", "emptyDir"] = "pvc"
    results_size: str = "2Gi"
    runner_command: tuple[str, ...] = field(default=DEFAULT_RUNNER_COMMAND)
    runner_deadline_s: int = 7200  # activeDeadlineSeconds of one runner Job: nightly's budgets total 69 min on it
    load_workers: int = 0  # Locust workers next to the runner, whose Locust loads are their master (0: none)

    @property
    def with_runner(self) -> bool:
        return self.runner or self.schedule is not None


def _validate_cron(schedule: str) -> None:
    text = schedule.strip()
    if text in _CRON_MACROS:
        return
    parts = text.split()
    if len(parts) != 5 or not all(_CRON_FIELD.match(part) for part in parts):
        raise ConfigError("schedule", schedule, "expected 5 cron fields such as '0 2 * * *', or a macro like @daily")


def validate_render_options(options: RenderOptions, spec: ServiceSpec) -> None:
    """Check ``options`` against each other and the spec; raise ConfigError naming the field and value."""
    if not _DNS_LABEL.match(options.namespace):
        raise ConfigError("namespace", options.namespace, "must be a DNS-1123 label (lower-case letters, digits, '-')")
    match = _IMAGE.match(options.image)
    if not match:
        raise ConfigError("image", options.image, "expected NAME:TAG or NAME@sha256:DIGEST (lower-case name)")
    if not match.group("tag") and not match.group("digest"):
        raise ConfigError("image", options.image, "needs a tag or digest (an implicit ':latest' is not reproducible)")
    if match.group("tag") == "latest":
        raise ConfigError("image", options.image, "':latest' is not reproducible; use a version tag or digest")
    if not (0 < options.load_time_s <= 3600):
        raise ConfigError("load_time_s", options.load_time_s, "must be in (0, 3600] seconds")
    if options.hpa_metric not in HPA_METRICS:
        raise ConfigError("hpa_metric", options.hpa_metric, f"choose one of {', '.join(HPA_METRICS)}")
    if options.max_replicas is not None and not (spec.replica_count <= options.max_replicas <= 1000):
        raise ConfigError(
            "max_replicas", options.max_replicas, f"must be between the spec's replicas ({spec.replica_count}) and 1000"
        )
    if options.schedule is not None:
        _validate_cron(options.schedule)
    if options.results_volume not in RESULTS_VOLUMES:
        raise ConfigError("results_volume", options.results_volume, f"choose one of {', '.join(RESULTS_VOLUMES)}")
    if not _QUANTITY.match(options.results_size):
        raise ConfigError("results_size", options.results_size, "expected a storage quantity such as '2Gi'")
    if not options.runner_command:
        raise ConfigError("runner_command", options.runner_command, "must name a command")
    if not (60 <= options.runner_deadline_s <= 7 * 86400):
        raise ConfigError("runner_deadline_s", options.runner_deadline_s, "must be between 60 s and 7 days")
    if isinstance(options.load_workers, bool) or not isinstance(options.load_workers, int) or not 0 <= options.load_workers <= 1000:
        raise ConfigError("load_workers", options.load_workers, "must be an integer from 0 (none) to 1000")
    if options.load_workers and not options.with_runner:
        raise ConfigError("load_workers", options.load_workers, "the workers' master is the in-cluster runner: "
                          "render it too (--runner or --schedule)")
