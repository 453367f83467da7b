"""The service's command-line flags, shared by `harness serve` and `python -m harness.service`.

Flags only collect values; `config_from_args` hands them to `harness.config.resolve_service_config`,
the one place where flag > environment (HARNESS_FAULT_TOKEN, HARNESS_WEIGHTS_DIR) > file > default
is resolved and validated.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.config import PRECISIONS, ServiceConfig, resolve_service_config

__all__ = ["add_service_arguments", "config_from_args", "run_from_args", "start_fault_argument", "start_fault_flags"]

_FIELDS = (
    "host", "port", "model", "precision", "device", "max_batch_size", "max_queue_delay_ms", "max_queue_size",
    "max_body_bytes", "startup_delay_s", "live_during_load", "warmup_iters", "torch_threads", "seed",
    "weights_dir", "fault_token", "grace_period_s", "start_faults",
)


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the service flags to ``parser`` (every default None: unset flags defer to env/file/defaults)."""
    add = parser.add_argument
    add("--config", metavar="FILE", help="YAML file of service settings (ServiceConfig fields)")
    add("--host", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, help="port to bind; 0 picks a free port, logged in the 'listening' event (default 8000)")
    add("--model", help="reference model to serve (default ranker-mlp; see harness.service.registry)")
    add("--precision", choices=PRECISIONS, help="fp32 | fp16 | bf16 (default fp32)")
    add("--device", choices=("auto", "cpu", "cuda"), help="auto: cuda when available, else cpu (default auto)")
    add("--max-batch-size", type=int, help="samples per forward pass at most (default 32)")
    add("--max-queue-delay-ms", type=float, help="longest wait for a batch to fill (default 50)")
    add("--max-queue-size", type=int, help="requests that may wait; beyond it 503 + Retry-After (default 256)")
    add("--max-body-bytes", type=int, help="largest request body; beyond it 413 (default 4 MiB)")
    add("--startup-delay-s", type=float, help="simulated extra model-load time (default 0)")
    add(
        "--live-during-load",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="liveness answers 200 while the model loads (default); --no-live-during-load fails it until loaded",
    )
    add("--warmup-iters", type=int, help="forward passes before turning ready (default 2)")
    add("--torch-threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    add("--seed", type=int, help="seed of the generated weights (default 0)")
    add("--weights-dir", help="where generated weights are cached (default $HARNESS_WEIGHTS_DIR or ~/.cache/harness/weights)")
    add("--fault-token", help="bearer token enabling the fault hooks (default $HARNESS_FAULT_TOKEN; none: disabled)")
    add("--grace-period-s", type=float, help="on SIGTERM, the longest wait for in-flight requests (default 30)")
    add("--start-fault", dest="start_faults", action="append", type=start_fault_argument, metavar="KIND[:JSON]",
        help="a fault active from the start (repeatable): a deliberately slow or broken build, e.g. "
             "'slow-inference:{\"factor\": 20}' or 'crash:{\"delay_s\": 5}'")


def start_fault_argument(text: str) -> dict[str, Any]:
    """Return ``{"kind", "params"}`` of a ``--start-fault KIND[:JSON]`` value; raise argparse.ArgumentTypeError."""
    import json

    kind, _, params = text.partition(":")
    try:
        parsed = json.loads(params) if params.strip() else {}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: parameters after ':' must be a JSON object ({exc})") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: parameters after ':' must be a JSON object")
    return {"kind": kind.strip(), "params": parsed}


def start_fault_flags(config: ServiceConfig) -> list[str]:
    """Return the ``--start-fault`` flags that give a process ``config``'s start faults (for platforms)."""
    import json

    flags: list[str] = []
    for fault in config.start_faults:
        flags += ["--start-fault", f"{fault.kind}:{json.dumps(fault.params, separators=(',', ':'))}"]
    return flags


def config_from_args(args: argparse.Namespace, env: Any = None) -> ServiceConfig:
    """Return the resolved ServiceConfig from parsed flags; raise ConfigError naming a bad value."""
    flags = {name: getattr(args, name, None) for name in _FIELDS}
    return resolve_service_config(flags, env=env, file=getattr(args, "config", None))


def run_from_args(args: argparse.Namespace) -> int:
    """Serve with the parsed flags until drained, then end the process with the exit code.

    Raises HarnessError (a bad setting, a port in use) before serving. Once served, it does not
    return: the interpreter's own teardown after torch takes about half a second, which would push
    the exit past the shutdown grace period the service has just kept to, so the process ends with
    ``os._exit`` once its output is flushed.
    """
    import os
    import sys
    import time

    from harness.extras import require_extra

    started_at = time.monotonic()
    config = config_from_args(args)
    require_extra("service", "the reference service")  # before listening: a replica without torch fails at once, saying why
    from harness.service.server import serve  # uvicorn is imported only when serving

    code = serve(config, started_at=started_at)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
