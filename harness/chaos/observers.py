"""What watches a chaos run: the background load, the client-side prober and replica telemetry.

Started together once the deployment exists (while its replicas load: what they record before the
baseline lies outside every window the analysis looks at) and stopped together; each is assigned
before it starts, so an interrupt during a start still finds it to stop, and an observer failing to
stop never keeps the teardown from running (its error is returned, and recorded by the run).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.request_records import TIMELINE_FILE

__all__ = ["Observers", "protocol_with_inputs"]


class Observers:
    """The load, prober and telemetry of one chaos run (each None until started)."""

    def __init__(self) -> None:
        self.load: Any = None  # harness.chaos.loadgen.BackgroundLoad
        self.prober: Any = None  # harness.load.prober.Prober
        self.telemetry: Any = None  # harness.measure.telemetry.TelemetrySampler; None where not sampled

    def start(self, deployment: Any, out_dir: Path, *, preset: Any, experiment: Any, model: str,
              cpus: list[int] | None, max_duration_s: float, sample_telemetry: bool, protocol: Any = None) -> None:
        """Start the load, telemetry (when ``sample_telemetry``) and the prober against ``deployment``;
        return once the load has started. ``protocol`` (`harness.protocolspec.ProtocolSettings`, the spec's
        target's) is what both send; None: oip-v2 to ``model``. Raises HarnessError when one cannot start."""
        from harness.chaos.loadgen import BackgroundLoad
        from harness.load.prober import Prober
        from harness.measure.telemetry import TELEMETRY_FILE, TelemetrySampler

        drill_rate = experiment.extension.load_rate_per_s  # a drill sized in requests/s sets its own load
        self.load = BackgroundLoad(
            "rate" if drill_rate else preset.load, deployment.endpoint, out_dir, max_duration_s=max_duration_s,
            rate_per_s=drill_rate or preset.load_rate_per_s, users=preset.locust_users, model=model,
            timeout_s=preset.prober_timeout_s, cpus=cpus, protocol=protocol,
        )
        self.load.spawn()  # its imports overlap the prober's start
        if sample_telemetry:
            self.telemetry = TelemetrySampler(
                out_dir / TELEMETRY_FILE, lambda: {r.name: r.pid for r in deployment.replicas()}, interval_s=0.5
            )
            self.telemetry.start()
        self.prober = Prober(
            deployment.endpoint, out_dir / TIMELINE_FILE, interval_s=preset.prober_interval_s,
            timeout_s=preset.prober_timeout_s, model=model, cpus=cpus, max_duration_s=max_duration_s, protocol=protocol,
        )
        self.prober.start()
        self.load.wait_started()  # failed requests are records too: this returns before any replica is Ready

    def stop(self, *, flush: bool = True) -> list[str]:
        """Stop every observer that started (after the load's last flush, with ``flush``); return the
        errors met, one line each."""
        from harness.chaos.loadgen import FLUSH_S

        if flush and self.load is not None and self.load.running:
            time.sleep(FLUSH_S)  # the generator's last flush must cover the window's end
        errors = []
        for name, stop in (("load", self.load and self.load.stop), ("prober", self.prober and self.prober.stop),
                           ("telemetry", self.telemetry and self.telemetry.stop)):
            if not stop:
                continue
            try:
                stop()
            except Exception as exc:  # an observer failing to stop must not keep the teardown from running
                errors.append(f"stopping {name}: {exc}")
        return errors

    def describe(self) -> dict[str, Any]:
        """Return the load and prober as result.json records them."""
        return {
            "load": self.load.describe() if self.load is not None else None,
            "prober": self.prober.summary.to_dict() if self.prober is not None and self.prober.summary else None,
        }


def protocol_with_inputs(deployment: Any, protocol: Any, *, running: bool, ready_timeout_s: float) -> Any:
    """Return ``protocol`` (oip-v2 to a model the spec gives no tensors for) with its input tensors, read from
    the deployment once it is Ready (`harness.load.protocols.oip_v2.with_metadata`). A deploy-time fault
    (``running`` False) leaves no server to read them from before measuring: ConfigError naming the field."""
    from harness.load.protocols.oip_v2 import with_metadata

    if not running:
        raise ConfigError("target.protocol.inputs", None,
                          f"the oip-v2 model {protocol.reference_model!r} has no input tensors in the spec, and a "
                          "deploy-time fault leaves no Ready server to read them from first; give target.protocol.inputs "
                          "or target.protocol.bodies_file")
    deployment.wait_ready(timeout_s=ready_timeout_s)
    return with_metadata(protocol, deployment.endpoint)
