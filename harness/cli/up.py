"""`harness up`: deploy a service spec on the local platform and keep it up until told to stop.

Prints ``endpoint URL``, ``state PATH`` and ``events PATH`` lines at once, ``ready N/N ...`` when every
replica is Ready, stays up for ``--for-s`` seconds or until SIGINT/SIGTERM, then tears everything down
and exits 0. A bad spec or flag exits 2 naming the field.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness.config import TOPOLOGIES
from harness.errors import ConfigError
from harness.paths import path_type, validate_output_dir, validate_output_file
from harness.signals import INTERRUPTS, on_signals

__all__ = ["register", "run_up"]

_POLL_S = 0.2


def register(subparsers: Any) -> None:
    """Add the `up` subcommand."""
    parser = subparsers.add_parser(
        "up",
        help="deploy the service locally and keep it up",
        description="Deploy a service spec on the local platform (replicas behind a front balancer) until "
        "--for-s elapses or SIGINT/SIGTERM, then tear everything down.",
    )
    parser.add_argument("--topology", choices=TOPOLOGIES, help="single | active-standby | multi-active (default: the spec's)")
    parser.add_argument("--replicas", type=int, help="replica count (default: the topology's)")
    parser.add_argument("--spec", type=path_type("--spec"), metavar="FILE", help="service spec YAML (default: the built-in defaults)")
    parser.add_argument("--for-s", type=float, metavar="N", help="stay up N seconds (default: until SIGINT/SIGTERM)")
    parser.add_argument("--state-file", type=path_type("--state-file"), metavar="PATH", help="where to write the state JSON (default WORKDIR/state.json)")
    parser.add_argument("--workdir", type=path_type("--workdir"), metavar="DIR", help="events, logs and state (default: a new temporary directory)")
    parser.add_argument("--no-cgroups", action="store_true", help="do not use cgroups (limits fall back to RLIMIT_AS)")
    parser.set_defaults(func=run_up)


def run_up(args: argparse.Namespace) -> int:
    """Deploy, report, stay up, tear down; return 0. Raises ConfigError (exit 2) or DeploymentError."""
    from harness.config import load_spec
    from harness.platforms import deploy

    if args.workdir is not None:
        validate_output_dir(args.workdir, "--workdir")
    if args.state_file is not None:
        validate_output_file(args.state_file, "--state-file")
    if args.for_s is not None and not args.for_s > 0:
        raise ConfigError("--for-s", args.for_s, "must be greater than zero")
    spec = load_spec(args.spec, topology=args.topology, replicas=args.replicas)
    workdir = args.workdir if args.workdir else Path(tempfile.mkdtemp(prefix="harness-up-"))
    stop = threading.Event()
    with on_signals(INTERRUPTS, lambda *_: stop.set()):
        started = time.monotonic()
        deployment = deploy(spec, workdir=workdir, state_path=args.state_file,
                            use_cgroups=not args.no_cgroups)
        with deployment:
            _say(f"endpoint {deployment.endpoint}")
            _say(f"state {deployment.state_path}")
            _say(f"events {deployment.events_path}")
            _say(f"limits memory={deployment.memory_enforcement} cpu={deployment.cpu_enforcement}")
            _stay_up(deployment, spec.replica_count, stop, started, args.for_s)
            _say("tearing down")
        _say("down")
    return 0


def _stay_up(deployment: Any, replicas: int, stop: threading.Event, started: float, for_s: float | None) -> None:
    deadline = None if for_s is None else time.monotonic() + for_s
    announced = False
    while not stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return
        if not announced and sum(r.ready for r in deployment.replicas()) >= replicas:
            announced = True
            _say(f"ready {replicas}/{replicas} replicas in {time.monotonic() - started:.1f} s")
        stop.wait(_POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - time.monotonic())))


def _say(line: str) -> None:
    print(line, flush=True)
