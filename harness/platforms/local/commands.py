"""How the local platform names and starts its replicas: replica names, the reference service's argv, log tails."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from harness.config import ServiceSpec
from harness.platforms.local.replica import HOST
from harness.service.options import start_fault_flags

__all__ = ["replica_names", "service_command", "log_tail"]


def replica_names(spec: ServiceSpec) -> list[str]:
    """Return the replica names of a spec in order ("<name>-0" is the active-standby primary)."""
    return [f"{spec.name}-{index}" for index in range(spec.replica_count)]


def service_command(spec: ServiceSpec, port: int, *, python: str = sys.executable,
                    extra_args: Sequence[str] = ()) -> list[str]:
    """Return the argv of one reference-service replica listening on ``port`` (the token travels in env)."""
    s = spec.service
    command = [
        python, "-m", "harness.service", "--host", HOST, "--port", str(port), "--model", s.model,
        "--precision", s.precision, "--device", s.device, "--max-batch-size", str(s.max_batch_size),
        "--max-queue-delay-ms", f"{s.max_queue_delay_ms:g}", "--max-queue-size", str(s.max_queue_size),
        "--max-body-bytes", str(s.max_body_bytes), "--startup-delay-s", f"{s.startup_delay_s:g}",
        "--live-during-load" if s.live_during_load else "--no-live-during-load",
        "--warmup-iters", str(s.warmup_iters), "--seed", str(s.seed), "--weights-dir", str(s.weights_dir),
        # the service drains within what the platform grants it before SIGKILL
        "--grace-period-s", f"{min(s.grace_period_s, spec.termination_grace_period_s):g}",
        *start_fault_flags(s),
    ]
    if s.torch_threads is not None:
        command += ["--torch-threads", str(s.torch_threads)]
    return command + list(extra_args)


def log_tail(path: Path, lines: int = 8) -> str:
    """Return the last ``lines`` lines of a log file, indented under a header ("" when absent or empty)."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n  --- last lines of {path} ---\n" + "\n".join(f"  | {line}" for line in text) if text else ""
