"""Interleaved A/B: two builds measured in alternating rounds, so the machine's drift cancels in each pair.

**Interleaved A/B** (`run_interleaved`): when both builds are at hand, their rounds alternate in
pairs ordered A B, B A, A B, B A... ("ABBA"). Each pair is one A round and one B round measured back
to back, so slow drift of the machine (another job starting, thermal state) hits both members of a
pair nearly alike and cancels in the pair's ratio. Alternating which arm goes first also cancels a
linear drift within pairs and any "second of two" effect, which plain A B A B would turn into a
systematic bias of B. Both arms are written as runs with rounds (``a/`` and ``b/``, each as
`harness.load.rounds` writes a run of rounds); every round records its ``pair``, its ``position`` in
the session and the session id, so the comparison can pair them (`harness.measure.regression`).

Where the builds are deployed (``deploy``): ``"round"`` deploys and tears down for every round (the
deployment's own variation is then sampled too, at ~4 s a round); ``"session"`` deploys each build
once and alternates short rounds between the two live deployments (the idle one costs nothing).
On a shared 2-core VM the machine drifts by 10-20% over tens of seconds; short rounds two seconds
apart see nearly the same machine, so the pair's ratio cancels it: measured here (text-encoder,
32 samples a request, 8 req/s, 2 s rounds, 8 pairs), the spread of pair log-ratios was 3-7% with
deploy-once sessions against 6-13% with a deployment per round, while two deployments of one build
differed by 0.3-2.2% (mean log-ratio of 3 A/A sessions). ``"requests"`` (the default of `harness
bench ab`) deploys each build once and makes each pair one open-loop run whose requests alternate
A, B, A, B..., so even a burst of other work shorter than a round hits both builds alike; with 2
replicas a build, `harness bench compare` (20 A/A and 20 A/B sessions of 10 pairs, under other work at
load average 1.5-3.7) measured a per-pair spread of 4.8% (median; 16.4% at worst), 0 of 20 false
alarms and 19 of 20 builds 10% slower flagged (the one missed was "inconclusive", in a burst).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from harness.cpus import CpuPlan
from harness.errors import ConfigError
from harness.load.profiles import LoadProfile
from harness.load.rounds import (
    FAULT_MARGIN_S, READY_TIMEOUT_S, Arm, Progress, Teardown, close_deployment, inject_arm_fault, measure_round,
    round_dir_name, summarize_rounds, warm_up, write_result,
)
from harness.load.session import RESULT_FILE, RateLoad, run_session
from harness.paths import resolve_path

__all__ = ["INTERLEAVE_ORDER", "DEPLOY_MODES", "interleave_schedule", "run_interleaved"]

INTERLEAVE_ORDER = "ABBA"  # pairs alternate A B, B A, ...: see the module docstring
DEPLOY_MODES = ("requests", "session", "round")
SESSION_REWARM_S = 0.3  # unmeasured requests before each round on a deployment that sat idle
# "requests" mode: consecutive requests go to A, B, A, B... (one at a time). Measured here under other
# work (load average 3-4, text-encoder, 2 replicas a build, 10 pairs of 4 s): the per-pair spread of p50
# log-ratios was 2.3-7.3% when alternating every request against 5-49% in blocks of one second, since
# a burst of other work then hits one arm's block and not the other's.
ALTERNATE_EVERY = 1


def interleave_schedule(pairs: int) -> list[tuple[int, str]]:
    """Return (pair, arm) in measuring order: pair 1 A then B, pair 2 B then A, ... (1-based pairs)."""
    if pairs < 1:
        raise ConfigError("rounds", pairs, "must be at least 1")
    order: list[tuple[int, str]] = []
    for pair in range(1, pairs + 1):
        first, second = ("a", "b") if pair % 2 else ("b", "a")
        order += [(pair, first), (pair, second)]
    return order


def run_interleaved(
    a: Arm,
    b: Arm,
    load: LoadProfile | RateLoad,
    out_dir: str | Path,
    *,
    pairs: int,
    platform: str = "local",
    cpus: CpuPlan = CpuPlan(None, None),
    warmup_s: float = 0.0,
    prober: bool = False,
    prober_interval_s: float = 0.05,
    telemetry: bool = True,
    metadata: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    deploy: str = "round",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measure ``pairs`` pairs of rounds of arms ``a`` and ``b`` in ABBA order; write ``out_dir/a`` and
    ``out_dir/b`` as runs with rounds sharing one interleave session id; return their ``result.json``.

    ``deploy``: "round" (a fresh deployment per round), "session" (each arm deployed once, rounds
    alternate between the two live deployments) or "requests" (each arm deployed once; each pair is one
    open-loop run whose requests alternate between A and B, split by target afterwards; a `RateLoad`
    only); see the module docstring. Raises ConfigError for bad settings (before deploying anything),
    HarnessError when a round fails.
    """
    say = progress or (lambda _message: None)
    if warmup_s < 0:
        raise ConfigError("--warmup-s", warmup_s, "must not be negative")
    if deploy not in DEPLOY_MODES:
        raise ConfigError("--deploy", deploy, f"choose one of {', '.join(DEPLOY_MODES)}")
    if deploy == "requests" and not isinstance(load, RateLoad):
        raise ConfigError("--deploy", deploy, "interleaving requests needs an open-loop rate load (--rate-rps)")
    schedule = interleave_schedule(pairs)
    a.validate("--fault-param-a")
    b.validate("--fault-param-b")
    out = resolve_path(out_dir, "out_dir")
    session = uuid.uuid4().hex[:12]
    arms = {"a": a, "b": b}
    results: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    teardown = Teardown(background=True, progress=say)
    live: dict[str, tuple[Any, dict[str, Any] | None]] = {}
    try:
        if deploy in ("session", "requests"):
            live = _deploy_session(arms, load, out, platform=platform, cpus=cpus, warmup_s=warmup_s,
                                   rounds_s=pairs * (load.duration_s + SESSION_REWARM_S + 5.0), say=say)
        if deploy == "requests":
            for pair in range(1, pairs + 1):
                first, second = ("a", "b") if pair % 2 else ("b", "a")
                say(f"pair {pair} of {pairs}: requests alternate {first.upper()} {second.upper()}")
                both = _measure_alternating(live, (first, second), load, out, pair, cpus=cpus, session=session,
                                            metadata=metadata or {}, progress=say)
                for name in ("a", "b"):
                    results[name].append(both[name])
            schedule = []
        for position, (pair, name) in enumerate(schedule, start=1):
            index = len(results[name]) + 1
            say(f"pair {pair} of {pairs}, {name.upper()} ({position} of {len(schedule)})")
            info = {"round": {"index": index, "pair": pair, "position": position, "session": session, "arm": name,
                              "deploy": deploy}}
            round_out = out / name / round_dir_name(index)
            if deploy == "session":
                deployment, injected = live[name]
                warm_up(deployment, load, SESSION_REWARM_S)
                results[name].append(run_session(
                    deployment, load, round_out, generator_cpus=cpus.generator, prober=prober,
                    prober_interval_s=prober_interval_s, telemetry=telemetry, progress=say,
                    metadata={**(metadata or {}), **info, "injected_fault": injected, "warmup_s": SESSION_REWARM_S}))
            else:
                results[name].append(measure_round(
                    arms[name], load, round_out, platform=platform, cpus=cpus, warmup_s=warmup_s,
                    prober=prober, prober_interval_s=prober_interval_s, telemetry=telemetry,
                    metadata={**(metadata or {}), **info}, progress=say, teardown=teardown))
    finally:
        for name, (deployment, _) in live.items():
            teardown(deployment, out / name)
        teardown.close()
        summaries = {}
        for name in ("a", "b"):
            if results[name]:
                interleave = {"session": session, "arm": name, "order": INTERLEAVE_ORDER, "pairs": pairs,
                              "other": "../" + ("b" if name == "a" else "a")}
                summaries[name] = summarize_rounds(results[name], extra={"interleave": interleave,
                                                                        "completed": len(results[name]) == pairs})
                write_result(out / name / RESULT_FILE, summaries[name])
    return summaries["a"], summaries["b"]


def _measure_alternating(
    live: Mapping[str, tuple[Any, dict[str, Any] | None]], order: tuple[str, str], load: RateLoad, out: Path,
    pair: int, *, cpus: CpuPlan, session: str, metadata: Mapping[str, Any], progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure one pair as one open-loop run whose requests alternate between the two live deployments
    (``order[0]`` first), `ALTERNATE_EVERY` requests at a time; split the records by target into
    ``<arm>/round-NN/``; return each arm's result. A ``progress`` that takes beats (a
    `harness.load.heartbeat.LoadProgress`) gets the pair's heartbeat while it runs, as a load session's."""
    from harness.load.heartbeat import heartbeat_for
    from harness.load.rate import run_rate
    from harness.load.result import result_from_records
    from harness.load.session import build_result
    from harness.request_records import REQUESTS_FILE, RequestRecord, write_records

    for name in order:
        warm_up(live[name][0], load, SESSION_REWARM_S / 2)
    pair_dir = out / "pairs" / round_dir_name(pair)
    endpoints = {name: live[name][0].endpoint for name in order}
    with heartbeat_for(pair_dir / REQUESTS_FILE, load.duration_s, progress):
        run = run_rate(endpoints[order[0]], pair_dir, rate_rps=load.rate_rps, duration_s=load.duration_s,
                       model=load.model, batch_size=load.request_rows, cpus=cpus.generator,
                       alternate_hosts=[endpoints[order[1]]], alternate_every=ALTERNATE_EVERY)
    results = {}
    for position, name in enumerate(order, start=1):
        mine = [r for r in run.records if r.target == endpoints[name]]
        round_out = out / name / round_dir_name(pair)
        round_out.mkdir(parents=True, exist_ok=True)
        write_records(round_out / REQUESTS_FILE, mine, RequestRecord)
        arm_load = result_from_records(
            mine, source="rate", cpu=run.load.generator_cpu, exit_code=run.load.exit_code,
            hard_killed=run.load.hard_killed, started_s=run.load.started_s, ended_s=run.load.ended_s,
            paths={"requests": str(round_out / REQUESTS_FILE)},
            extra={**run.load.extra, "alternated_with": endpoints[order[2 - position]], "pair_run": str(pair_dir)})
        if run.load.generator_saturated:
            arm_load = replace(arm_load, generator_saturated=True)
        per_arm = RateLoad(load.rate_rps / 2, load.duration_s, model=load.model, request_rows=load.request_rows)
        info = {"round": {"index": pair, "pair": pair, "position": position, "session": session, "arm": name,
                          "deploy": "requests"}}
        data = build_result(arm_load, per_arm, metadata={**metadata, **info, "injected_fault": live[name][1],
                                                         "warmup_s": SESSION_REWARM_S / 2})
        write_result(round_out / RESULT_FILE, data)
        results[name] = data
    return results


def _deploy_session(
    arms: Mapping[str, Arm], load: LoadProfile | RateLoad, out: Path, *, platform: str, cpus: CpuPlan,
    warmup_s: float, rounds_s: float, say: Progress,
) -> dict[str, tuple[Any, dict[str, Any] | None]]:
    """Deploy every arm once (same CPUs), wait until all are Ready, inject each arm's fault, warm each up;
    return {arm: (deployment, injected fault)}. Whatever was deployed is torn down if one fails."""
    from harness.platforms import deploy

    live: dict[str, tuple[Any, dict[str, Any] | None]] = {}
    try:
        for name, arm in arms.items():
            spec = arm.spec
            say(f"deploying {name} for the session: {spec.topology} ({spec.replica_count} replica(s), model "
                f"{spec.service.model}) on {platform}; service CPUs {cpus.to_dict()['service']}")
            live[name] = (deploy(spec, platform=platform, workdir=out / name / "platform", cpus=cpus.service), None)
        for name, arm in arms.items():
            deployment = live[name][0]
            deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
            injected = inject_arm_fault(deployment, arm, rounds_s + FAULT_MARGIN_S, say) if arm.fault else None
            live[name] = (deployment, injected)
            if warmup_s > 0:
                say(f"{name} warmed up with {warm_up(deployment, load, warmup_s)} request(s) in {warmup_s:g} s")
    except BaseException:
        for name, (deployment, _) in live.items():
            try:
                close_deployment(deployment, out / name)
            except Exception as exc:  # noqa: BLE001 - the first error is the one to raise
                say(f"warning: tearing down {name} failed: {exc}")
        raise
    return live
