"""`harness load`: deploy a service spec, run a load profile with the prober and telemetry, tear down.

Writes to ``--out``: requests.csv (every request), timeline.csv (the prober), telemetry.csv,
locust_*.csv and locust_summary.json (Locust's own figures, for comparison), events.jsonl (the
platform's events) and result.json (throughput, exact p50/p95/p99, errors, generator_saturated).
Progress goes to stderr. The deployment is torn down on every way out, SIGINT and SIGTERM included.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness.config import TOPOLOGIES
from harness.paths import path_type

PROFILE_CHOICES = ("steady", "ramp", "step", "spike", "soak")  # harness.load.profiles.PROFILE_KINDS
READY_TIMEOUT_S = 180.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``load`` subcommand."""
    parser = subparsers.add_parser(
        "load",
        help="deploy the service, run a Locust load profile with the prober and telemetry, write results",
        description="Deploy a service spec, run a load profile against it (Locust in its own process, "
                    "pinned away from the service where cores allow) with the client-side prober and "
                    "replica telemetry, write per-request data and result.json, and tear down.",
    )
    parser.add_argument("--topology", choices=TOPOLOGIES, default=None,
                        help="availability topology (default: the spec's, else single)")
    parser.add_argument("--profile", choices=PROFILE_CHOICES, default="steady", help="load shape (default: steady)")
    parser.add_argument("--duration-s", type=float, required=True, metavar="N", help="length of the load, seconds")
    parser.add_argument("--out", type=path_type("--out"), required=True, metavar="DIR", help="output directory")
    parser.add_argument("--spec", type=path_type("--spec"), default=None, metavar="FILE", help="service spec (YAML)")
    parser.add_argument("--users", type=int, default=None, metavar="N",
                        help="users (the peak for ramp, step and spike; default 4)")
    parser.add_argument("--model", default=None, help="reference model (default: the spec's)")
    parser.add_argument("--platform", default="local", help="platform to deploy on (default: local)")
    parser.add_argument("--prober-interval-s", type=float, default=0.05, metavar="S",
                        help="client-side prober interval (default: 0.05)")
    parser.add_argument("--no-prober", action="store_true", help="run without the client-side prober")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the service and the generator to CPUs")
    parser.add_argument("--inject-fault", default=None, metavar="KIND",
                        help="inject a service fault into every replica for the whole run (e.g. slow-inference), "
                             "to measure a deliberately degraded build")
    parser.add_argument("--fault-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter of --inject-fault (repeatable), e.g. delay_ms=30")
    parser.set_defaults(func=run)


def _say(message: str) -> None:
    print(f"harness load: {message}", file=sys.stderr, flush=True)


def _spec(args: argparse.Namespace) -> Any:
    from harness.config import ServiceSpec, load_spec, validate_model

    spec = load_spec(args.spec, topology=args.topology)
    if args.model is not None:
        data = spec.model_dump(by_alias=True, mode="json")
        data["service"]["model"] = args.model
        spec = validate_model(ServiceSpec, data, source="--model")
    return spec


def _fault_params(pairs: list[str]) -> dict[str, Any]:
    """Return --fault-param KEY=VALUE pairs as a dict (numbers parsed); raise ConfigError naming a bad one."""
    from harness.errors import ConfigError

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--fault-param", pair, "expected KEY=VALUE, e.g. delay_ms=30")
        try:
            params[key.strip()] = float(text) if "." in text or "e" in text.lower() else int(text)
        except ValueError:
            params[key.strip()] = text
    return params


def _inject(deployment: Any, kind: str, params: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """Inject ``kind`` into every replica for the run; return what was injected (for result.json)."""
    from harness.service.client import inject_fault

    params = {"duration_s": duration_s, **params}
    for replica in deployment.replicas():
        inject_fault(replica.url, kind, deployment.fault_token, params)
    _say(f"injected {kind} {params} into every replica")
    return {"kind": kind, "params": params}


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    """Deploy, run the profile, write the results, tear down; return 0. Raises HarnessError subclasses."""
    from harness.load.profiles import build_profile
    from harness.load.session import CpuPlan, plan_cpus, run_session

    spec = _spec(args)
    profile = build_profile(args.profile, args.duration_s, users=args.users, model=spec.service.model)
    fault_params = _fault_params(args.fault_param)
    if fault_params and not args.inject_fault:
        from harness.errors import ConfigError

        raise ConfigError("--fault-param", args.fault_param, "needs --inject-fault")
    plan = CpuPlan(None, None) if args.no_pin else plan_cpus()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from harness.platforms import deploy

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM tears down like Ctrl-C
    try:
        _say(f"deploying {spec.topology} ({spec.replica_count} replica(s), model {spec.service.model}) "
             f"on {args.platform}; service CPUs {plan.to_dict()['service']}, generator CPUs {plan.to_dict()['generator']}")
        began = time.monotonic()
        deployment = deploy(spec, platform=args.platform, workdir=out / "platform", cpus=plan.service)
        try:
            deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
            _say(f"ready after {time.monotonic() - began:.1f} s at {deployment.endpoint}")
            injected = (_inject(deployment, args.inject_fault, fault_params, profile.duration_s + 120.0)
                        if args.inject_fault else None)
            result = run_session(
                deployment, profile, out, generator_cpus=plan.generator, prober=not args.no_prober,
                prober_interval_s=args.prober_interval_s, progress=_say,
                metadata={"topology": spec.topology, "replicas": spec.replica_count, "platform": args.platform,
                          "model": spec.service.model, "cpu_plan": plan.to_dict(), "injected_fault": injected},
            )
        finally:
            _say("tearing down")
            deployment.close()
            _copy_events(deployment, out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    _record(out, result, spec, args)
    _say(_summary_line(result))
    if result.get("generator_saturated"):
        _say("warning: the load generator was saturated (CPU above 90% of a core); the figures describe the "
             "generator's limit, not only the service's")
    print(json.dumps({k: result.get(k) for k in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors",
                                                 "generator_saturated")}))
    return 0


def _record(out: Path, result: dict[str, Any], spec: Any, args: argparse.Namespace) -> None:
    """Write run.json: the environment fingerprint makes `harness compare` of two load runs warn on
    different machines."""
    from harness.results import ARTIFACT_FILES, new_run_record, save_run

    record = new_run_record("load", command=["harness", *sys.argv[1:]], profile=args.profile, platform=args.platform,
                            topology=spec.topology, config={"spec": spec.model_dump(by_alias=True, mode="json"),
                                                            "profile": result.get("profile"),
                                                            "injected_fault": result.get("injected_fault")})
    for name in ("result", "requests", "timeline", "telemetry", "events"):
        if (out / ARTIFACT_FILES[name]).exists():
            record.add_artifact(name, ARTIFACT_FILES[name])
    record.summary = {k: result.get(k) for k in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors",
                                                 "generator_saturated")}
    record.finish("completed")
    save_run(out, record)


def _copy_events(deployment: Any, out: Path) -> None:
    source = Path(deployment.events_path)
    if source.exists() and source.resolve() != (out / "events.jsonl").resolve():
        shutil.copyfile(source, out / "events.jsonl")


def _summary_line(result: dict[str, Any]) -> str:
    def ms(key: str) -> str:
        value = result.get(key)
        return "n/a" if value is None else f"{value:.1f} ms"

    rps = result.get("throughput_rps")
    return (f"done: {result.get('requests', 0)} requests, {result.get('errors', 0)} errors, "
            f"{'n/a' if rps is None else f'{rps:.1f}'} req/s, p50 {ms('p50_ms')}, p95 {ms('p95_ms')}, "
            f"p99 {ms('p99_ms')}")
