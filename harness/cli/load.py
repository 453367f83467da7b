"""`harness load`: deploy a service spec, run a load profile with the prober and telemetry, tear down.

Writes to ``--out``: requests.csv (every request), timeline.csv (the prober), telemetry.csv,
locust_*.csv and locust_summary.json (Locust's own figures, for comparison), events.jsonl (the
platform's events), result.json (throughput, exact p50/p95/p99, errors, generator_saturated) and
run.json, all through `harness.workflows.load.run_load` (this command parses flags and prints).
With ``--rounds N`` (N > 1) each round is a fresh deployment written to ``round-01/``... and the
top-level result.json holds the medians over rounds (`harness.load.rounds`); ``--rate-rps`` sends
open-loop load instead of Locust users. ``--protocol`` says what the load and the prober send
(`harness.load.protocols`: oip-v2, openai-chat, openai-completions, http-json) and ``--endpoint URL``
measures a server as it is, deploying nothing; a generative load also reports exact TTFT / TPOT / ITL
percentiles and goodput (``--ttft-ms``, ``--tpot-ms``, ``--e2e-ms``: the bounds a good request meets). Progress goes to stderr, with a heartbeat of the load so far
(requests, rate, errors, p99) every few seconds: a bar on a terminal, plain lines in CI. Deployments
are torn down on every way out, SIGINT and SIGTERM included.

At the end the load is judged against the SLO (``--p99-ms``, ``--max-error-rate``; defaults from
`harness.slo`) by the one judgement of a load (`harness.measure.load_verdict.judge_load`, as the main
job and the scenarios do): the verdict line is printed and recorded in run.json. It never sets the
exit code: `harness load` measures (a deliberately degraded build too); the main job, the scenarios
and `harness compare` judge.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.cli._options import add_out
from harness.config import TOPOLOGIES
from harness.paths import path_type
from harness.slo import DEFAULT_MAX_ERROR_RATE, DEFAULT_P99_MS

PROTOCOL_CHOICES = ("oip-v2", "openai-chat", "openai-completions", "http-json")  # harness.load.protocols.PROTOCOL_NAMES
# flag -> ProtocolSettings field, for the flags given (a flag left out keeps the protocol's default)
PROTOCOL_FLAGS = {"path": "path", "method": "method", "body_template": "body_template", "bodies_file": "bodies_file",
                  "success_status": "success_status", "success_field": "success_field", "max_tokens": "max_tokens",
                  "prompt": "prompt", "prompt_words": "prompt_words", "dataset": "dataset", "prompt_seed": "seed"}

PROFILE_CHOICES = ("steady", "ramp", "step", "spike", "soak")  # harness.load.profiles.PROFILE_KINDS
DEFAULT_WARMUP_S = 2.0  # with --rounds > 1 or --rate-rps; a single Locust run starts measuring at once


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
    add_out(parser, required=True, what="output directory (requests.csv, result.json, run.json, ...)")
    parser.add_argument("--spec", type=path_type("--spec"), default=None, metavar="FILE", help="service spec (YAML)")
    parser.add_argument("--users", type=int, default=None, metavar="N",
                        help="users (the peak for ramp, step and spike; default 4)")
    parser.add_argument("--model", default=None,
                        help="reference model (default: the spec's); with --endpoint or another --protocol, the model "
                             "named in the requests")
    parser.add_argument("--platform", default="local", help="platform to deploy on (default: local)")
    parser.add_argument("--prober-interval-s", type=float, default=0.05, metavar="S",
                        help="client-side prober interval (default: 0.05)")
    parser.add_argument("--no-prober", action="store_true", help="run without the client-side prober")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the service and the generator to CPUs")
    parser.add_argument("--load-workers", type=int, default=1, metavar="N",
                        help="the load generator's processes: Locust's distributed mode (a master and N workers) or "
                             "the open-loop generator split N ways, their records merged into one requests.csv; "
                             "0: one per generator CPU (default 1: one process)")
    parser.add_argument("--inject-fault", default=None, metavar="KIND",
                        help="inject a service fault into every replica for the whole run (e.g. slow-inference), "
                             "to measure a deliberately degraded build")
    parser.add_argument("--fault-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter of --inject-fault (repeatable): for slow-inference factor=1.1 makes every "
                             "forward pass take 1.1x its own time (a build 10%% slower), delay_ms=30 adds a fixed "
                             "30 ms to every forward pass whatever its size")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="independent measurements, each a fresh deployment (deploy, ready, warm-up, measure, "
                             "tear down), written to round-01/ ...; result.json holds the medians over rounds. "
                             "harness compare needs at least 3 rounds a side to judge noise (default 1)")
    parser.add_argument("--rate-rps", type=float, default=None, metavar="R",
                        help="open-loop load at R requests/s, evenly spaced, latency from the intended send time, "
                             "instead of Locust users (not with --users or a --profile other than steady)")
    parser.add_argument("--request-rows", type=int, default=1, metavar="N",
                        help="samples per request with --rate-rps (default 1)")
    parser.add_argument("--warmup-s", type=float, default=None, metavar="S",
                        help=f"unmeasured open-loop load before each round's measurement (default {DEFAULT_WARMUP_S:g} "
                             "with --rounds > 1 or --rate-rps, else 0)")
    parser.add_argument("--p99-ms", type=float, default=DEFAULT_P99_MS, metavar="MS",
                        help=f"the SLO's p99 latency bound the load is judged by (default {DEFAULT_P99_MS:g})")
    parser.add_argument("--max-error-rate", type=float, default=DEFAULT_MAX_ERROR_RATE, metavar="F",
                        help=f"the SLO's share of requests that may fail (default {DEFAULT_MAX_ERROR_RATE:g}); "
                             "the verdict is printed and recorded in run.json, never the exit code")
    _add_protocol_flags(parser)
    parser.set_defaults(func=run)


def _add_protocol_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("protocol and target (harness.load.protocols)")
    group.add_argument("--endpoint", default=None, metavar="URL",
                       help="measure the server at URL as it is (http://host:port): nothing is deployed, no telemetry "
                            "(through the local balancer and its network faults instead: a --spec with "
                            "'target: {endpoint: URL}')")
    group.add_argument("--protocol", choices=PROTOCOL_CHOICES, default="oip-v2",
                       help="what the load and the prober send (default: oip-v2, the reference service's)")
    group.add_argument("--path", default=None, help="the request path (default: the protocol's; http-json needs one)")
    group.add_argument("--method", default=None, help="http-json: the HTTP method (default POST)")
    group.add_argument("--body-template", default=None, metavar="JSON",
                       help="http-json: the body, JSON where $n is the request's index")
    group.add_argument("--bodies-file", type=path_type("--bodies-file"), default=None, metavar="FILE",
                       help="http-json, oip-v2: a JSONL file of bodies, request n taking line n modulo their number "
                            "(oip-v2 to a model not built in reads its inputs from GET /v2/models/{model} without one)")
    group.add_argument("--success-status", type=int, action="append", default=None, metavar="CODE",
                       help="http-json: a status that means success (repeatable; default 200)")
    group.add_argument("--success-field", default=None, metavar="DOTTED",
                       help="http-json: a field the JSON answer must hold to succeed (outputs.0.data)")
    group.add_argument("--no-stream", action="store_true", help="openai-*: ask for the whole answer, not a stream")
    group.add_argument("--max-tokens", type=length_arg, default=None, metavar="N|MIN-MAX",
                       help="openai-*: max_tokens, fixed or uniform in MIN-MAX (default 16)")
    group.add_argument("--prompt", default=None, help="openai-*: the prompt")
    group.add_argument("--prompt-words", type=length_arg, default=None, metavar="N|MIN-MAX",
                       help="openai-*: prompts of N seeded words (or uniform in MIN-MAX) instead of --prompt")
    group.add_argument("--dataset", type=path_type("--dataset"), default=None, metavar="FILE",
                       help='openai-*: a JSONL file of {"prompt": ...} or {"messages": [...]} with optional max_tokens')
    group.add_argument("--prompt-seed", type=int, default=None, metavar="N",
                       help="openai-*: the seed request n's prompt and length are drawn from (default 0)")
    for flag, what in (("--ttft-ms", "time to first token"), ("--tpot-ms", "time per output token"),
                       ("--itl-ms", "every inter-token gap"), ("--e2e-ms", "end-to-end latency (default: --p99-ms)")):
        group.add_argument(flag, type=float, default=None, metavar="MS",
                           help=f"generative loads: the bound on a good request's {what}, for goodput")


def length_arg(text: str) -> int | dict[str, int] | str:
    """Return ``N`` as an int and ``MIN-MAX`` as a range (anything else as given: validation names the flag)."""
    low, dash, high = text.partition("-")
    if low.strip().isdigit() and (not dash or high.strip().isdigit()):
        return {"min": int(low), "max": int(high)} if dash else int(low)
    return text


def _spec(args: argparse.Namespace) -> Any:
    from harness.config import ServiceSpec, load_spec
    from harness.validation import validate_model

    spec = load_spec(args.spec, topology=args.topology)
    # the spec's model is a reference model; with --endpoint or a protocol of its own, --model is the protocol's
    if args.model is not None and args.endpoint is None and args.protocol == "oip-v2":
        data = spec.model_dump(by_alias=True, mode="json")
        data["service"]["model"] = args.model
        spec = validate_model(ServiceSpec, data, source="--model")
    return spec


def _protocol(args: argparse.Namespace, model: str) -> Any:
    """Return the `ProtocolSettings` of the protocol flags, its adapter built once (a bad template or bodies
    file fails here); raise ConfigError naming the flag and the value."""
    from harness.errors import ConfigError
    from harness.load.protocols import ProtocolSettings, build_adapter
    from harness.validation import validate_model

    data: dict[str, Any] = {"protocol": args.protocol, "stream": not args.no_stream,
                            "model": (args.model or model) if args.protocol == "oip-v2" else args.model}
    data.update({field: getattr(args, flag) for flag, field in PROTOCOL_FLAGS.items() if getattr(args, flag) is not None})
    for name in ("bodies_file", "dataset"):
        if data.get(name) is not None:
            data[name] = str(data[name])
    try:
        settings = validate_model(ProtocolSettings, data)
        if not settings.needs_metadata:  # else its tensors are read from the server before the load starts
            build_adapter(settings)
    except ConfigError as exc:
        name = {"seed": "prompt_seed"}.get(exc.field.split(".")[0], exc.field.split(".")[0])
        raise ConfigError(f"--{name.replace('_', '-')}", exc.value, exc.reason) from None
    plain = args.protocol == "oip-v2" and set(data) == {"protocol", "stream", "model"} and args.endpoint is None
    return None if plain else settings  # None: the load's own oip-v2 to its model, as before protocols


def _token_slo(args: argparse.Namespace) -> Any:
    from harness.errors import ConfigError
    from harness.slo import TokenSlo

    try:
        return TokenSlo(args.ttft_ms, args.tpot_ms, args.e2e_ms, args.itl_ms)
    except ConfigError as exc:
        raise ConfigError(f"--{exc.field.replace('_', '-')}", exc.value, exc.reason) from None


def _load_shape(args: argparse.Namespace, model: str, spec_protocol: Any = None) -> Any:
    """Return the Locust profile, or a RateLoad for --rate-rps; raise ConfigError for conflicting flags.
    What it sends: the protocol flags', else the spec's target's ``protocol`` (``spec_protocol``), else oip-v2."""
    from harness.errors import ConfigError
    from harness.load.profiles import build_profile
    from harness.load.session import RateLoad

    protocol = _protocol(args, model)
    if protocol is None:
        protocol = spec_protocol
    if args.rate_rps is None:
        return build_profile(args.profile, args.duration_s, users=args.users, model=model, protocol=protocol)
    if args.users is not None or args.profile != "steady":
        flag, value = ("--users", args.users) if args.users is not None else ("--profile", args.profile)
        raise ConfigError(flag, value, "Locust users do not mix with --rate-rps (open-loop); drop one of them")
    if not args.rate_rps > 0:
        raise ConfigError("--rate-rps", args.rate_rps, "must be greater than zero")
    if not args.duration_s > 0:
        raise ConfigError("--duration-s", args.duration_s, "must be greater than zero")
    if args.request_rows < 1:
        raise ConfigError("--request-rows", args.request_rows, "must be at least 1")
    return RateLoad(args.rate_rps, args.duration_s, model=model, request_rows=args.request_rows, protocol=protocol)


def _validate_fault_kind(kind: str | None) -> None:
    """Raise ConfigError naming --inject-fault for a kind the service does not know (its parameters
    are checked with it, by `Arm.validate`)."""
    from harness.errors import ConfigError
    from harness.faultparams import FAULT_KINDS

    if kind is not None and kind not in FAULT_KINDS:
        raise ConfigError("--inject-fault", kind, f"unknown fault kind; choose one of {', '.join(FAULT_KINDS)}")


def _slo(args: argparse.Namespace) -> Any:
    """Return the `harness.slo.Slo` of --p99-ms and --max-error-rate; raise ConfigError naming the flag."""
    from harness.errors import ConfigError
    from harness.slo import Slo

    try:
        return Slo(args.p99_ms, args.max_error_rate)
    except ConfigError as exc:
        raise ConfigError(f"--{exc.field.replace('_', '-')}", exc.value, exc.reason) from None


def run(args: argparse.Namespace) -> int:
    """Deploy, run the profile (in rounds), write the results, tear down (`harness.workflows.load.run_load`);
    return 0. Raises HarnessError subclasses."""
    from harness.cli._display import ProgressDisplay
    from harness.load.rounds import parse_fault_params
    from harness.cpus import CpuPlan, plan_cpus
    from harness.signals import sigterm_like_ctrl_c
    from harness.workflows.context import RunContext
    from harness.workflows.load import LoadSettings, run_load

    _validate_fault_kind(args.inject_fault)
    slo, token_slo = _slo(args), _token_slo(args)
    endpoint = _endpoint(args)
    spec = _spec(args)
    warmup_s = args.warmup_s if args.warmup_s is not None else (
        DEFAULT_WARMUP_S if endpoint is None and (args.rounds > 1 or args.rate_rps is not None) else 0.0)
    cpus = CpuPlan(None, None) if args.no_pin else plan_cpus()
    settings = LoadSettings(endpoint=endpoint, token_slo=token_slo,
        load=_load_shape(args, spec.service.model, spec.target.protocol if spec.target else None), rounds=args.rounds, warmup_s=warmup_s, fault=args.inject_fault,
        fault_params=parse_fault_params(args.fault_param),
        cpus=cpus, prober=not args.no_prober,
        prober_interval_s=args.prober_interval_s, profile=args.profile, command=["harness", *sys.argv[1:]],
        load_workers=_load_workers(args, cpus.generator),
    )
    say = ProgressDisplay("harness load")  # lines, and the load's heartbeat: a bar on a terminal, lines in CI
    context = RunContext(args.out, platform=args.platform, spec=spec, slo=slo, progress=say)
    with sigterm_like_ctrl_c():
        load = run_load(settings, context)
    result = load.result
    say(_summary_line(result))
    if result.get("tokens"):
        say(_tokens_line(result["tokens"]))
    if result.get("generator_saturated"):
        why = (result.get("generator") or {}).get("saturated_why") or "CPU above 90% of a core"
        say(f"warning: the load generator was saturated ({why}); the figures describe the "
            "generator's limit, not only the service's")
    say(f"verdict: {load.verdict.line()}")  # the last line: what the load means against the SLO
    figures = {k: result.get(k) for k in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors", "generator_saturated")}
    tokens = {"tokens": result["tokens"]} if result.get("tokens") else {}
    print(json.dumps({**figures, **tokens, "slo_verdict": load.verdict.outcome}))
    return 0


def _load_workers(args: argparse.Namespace, generator_cpus: Any) -> int:
    """Return --load-workers (0: one per CPU of ``generator_cpus``, the run's plan); raise ConfigError outside 0..64."""
    from harness.errors import ConfigError
    from harness.load.workers import generator_cores

    if not 0 <= args.load_workers <= 64:
        raise ConfigError("--load-workers", args.load_workers, "must be from 1 to 64, or 0 for one per generator CPU")
    if args.load_workers == 0:
        return generator_cores(64, generator_cpus)
    return args.load_workers


def _endpoint(args: argparse.Namespace) -> str | None:
    """Return --endpoint as a base URL; raise ConfigError for anything but http(s) or for flags it excludes."""
    from harness.errors import ConfigError
    from harness.load.profiles import check_http_url

    if args.endpoint is None:
        return None
    try:
        url = check_http_url(args.endpoint)
    except ValueError as exc:
        raise ConfigError("--endpoint", args.endpoint, str(exc)) from None
    for flag, value in (("--rounds", args.rounds if args.rounds != 1 else None), ("--inject-fault", args.inject_fault),
                        ("--warmup-s", args.warmup_s or None)):
        if value is not None:
            raise ConfigError(flag, value, "needs a deployment of the load's own; --endpoint measures a server as it is")
    return url


def _tokens_line(tokens: dict[str, Any]) -> str:
    def ms(key: str) -> str:
        value = tokens.get(key)
        return "n/a" if value is None else f"{value:.1f}"

    def per_s(key: str) -> str:
        value = tokens.get(key)
        return "n/a" if value is None else f"{value:.1f}"

    return (f"tokens: TTFT p50 {ms('ttft_p50_ms')} / p99 {ms('ttft_p99_ms')} ms, TPOT p50 {ms('tpot_p50_ms')} / "
            f"p99 {ms('tpot_p99_ms')} ms, ITL p50 {ms('itl_p50_ms')} / p99 {ms('itl_p99_ms')} ms, "
            f"{per_s('output_tokens_per_s')} output tokens/s, goodput {per_s('goodput_rps')} req/s "
            f"({tokens.get('good', 0)} of {tokens.get('requests', 0)} requests good)")


def _summary_line(result: dict[str, Any]) -> str:
    def ms(key: str) -> str:
        value = result.get(key)
        return "n/a" if value is None else f"{value:.1f} ms"

    rps = result.get("throughput_rps")
    return (f"done: {result.get('requests', 0)} requests, {result.get('errors', 0)} errors, "
            f"{'n/a' if rps is None else f'{rps:.1f}'} req/s, p50 {ms('p50_ms')}, p95 {ms('p95_ms')}, "
            f"p99 {ms('p99_ms')}")
