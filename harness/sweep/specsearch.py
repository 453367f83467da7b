"""The max-rate search of a spec's own deployment (``harness sweep --spec FILE``): a team's server, or an LLM's
goodput under TTFT and ITL objectives.

The spec is deployed as written (its target, topology and replicas, `harness.platforms.deploy`) and
measured through its endpoint with the protocol its target speaks (``target.protocol``; oip-v2 to the
spec's model without one). The search is today's (`harness.sweep.maxrate.find_max_rate`: the same probes,
windows, confirmation, generator scaling and budget) on a `SpecSession`, a `LocalSession` whose rate load
speaks that protocol. For a generative protocol (openai-chat, openai-completions) every window is also
judged by the token SLO (`harness.slo.TokenSlo`: per-request TTFT, ITL, TPOT and end-to-end bounds) and a
probe passes when at least ``min_good_share`` of its requests are good (`harness.sweep.search`): the max
rate found is the **max goodput rate**, the highest offered rate measured to meet the token SLO, and its
goodput (good requests per second) is reported beside it.

The pre-check times one closed-loop client for a moment (`harness.load.closed_loop`): one stream's rate,
from half of which the search starts and grows (a server that batches serves many streams at once).
"""

from __future__ import annotations

import asyncio
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.cpus import CpuPlan
from harness.errors import DeploymentError, HarnessError
from harness.protocolspec import ProtocolSettings
from harness.slo import TokenSlo
from harness.sweep.grid import SweepPlan
from harness.sweep.local import TELEMETRY_INTERVAL_S, LocalSession
from harness.sweep.points import PointTimeout, Precheck

__all__ = ["PRECHECK_S", "GENERATIVE", "SpecSession", "is_generative", "spec_protocol", "open_spec", "search_spec"]

PRECHECK_S = 1.0  # one client's measured time; a quarter second more of warm-up
GENERATIVE = ("openai-chat", "openai-completions")


def is_generative(protocol: ProtocolSettings) -> bool:
    """True for a protocol whose answers are tokens (the goodput search judges it by the token SLO)."""
    return protocol.protocol in GENERATIVE


def spec_protocol(spec: Any) -> ProtocolSettings:
    """Return what a spec's target speaks: its ``target.protocol``, else oip-v2 to the spec's model."""
    target = getattr(spec, "target", None)
    if target is not None and target.protocol is not None:
        return target.protocol
    return ProtocolSettings(model=spec.service.model)


class SpecSession(LocalSession):
    """A deployed spec measured with its own protocol (and, generative, its token SLO); see the module docs."""

    def __init__(self, deployment, target: str, plan: SweepPlan, workdir: Path, generator_cpus, sampler,
                 protocol: ProtocolSettings, token_slo: TokenSlo | None) -> None:
        super().__init__(deployment, target, plan, 1, workdir, generator_cpus, sampler)
        self.protocol = protocol
        self.token_slo = token_slo

    def precheck(self, timeout_s: float) -> Precheck:
        """Return one closed-loop client's rate as the capacity estimate; raise PointTimeout when it cannot run in
        ``timeout_s``, HarnessError when the server answered none of its requests."""
        from harness.load.closed_loop import run_closed_loop_protocol

        if timeout_s < PRECHECK_S + 1.0:
            raise PointTimeout(f"no pre-check fits in {timeout_s:g} s")
        result = asyncio.run(run_closed_loop_protocol(self.target, self.protocol, 1, warmup_s=0.25,
                                                      duration_s=PRECHECK_S, timeout_s=max(1.0, timeout_s - PRECHECK_S)))
        if not result["requests_ok"]:
            why = "; ".join(result["failures"]) or f"statuses {result['statuses']}"
            raise HarnessError(f"pre-check: the server answered none of one client's requests in {PRECHECK_S:g} s: {why}")
        rate = float(result["requests_per_s"])
        return Precheck(rate, f"one client: {rate:.1f} requests/s, p50 {result.get('p50_ms') or math.nan:.0f} ms")


@contextmanager
def open_spec(spec: Any, plan: SweepPlan, workdir: str | Path, *, cpus: CpuPlan, token_slo: TokenSlo | None,
              telemetry: bool = True) -> Iterator[SpecSession]:
    """Deploy ``spec`` on the local platform, wait Ready, yield its `SpecSession`; always tear down.

    Raises PointTimeout when it is not Ready within the plan's ready timeout, DeploymentError when it fails,
    HarnessError when an oip-v2 model's metadata cannot be read.
    """
    from harness.load.protocols.oip_v2 import with_metadata
    from harness.measure.telemetry import TelemetrySampler
    from harness.platforms import deploy

    workdir = Path(workdir)
    deployment = deploy(spec, platform="local", workdir=workdir, cpus=cpus.service)
    sampler = None
    try:
        try:
            deployment.wait_ready(timeout_s=plan.ready_timeout_s)
        except DeploymentError as exc:
            if "timed out" in str(exc):
                raise PointTimeout(f"not Ready within {plan.ready_timeout_s:g} s: {str(exc).splitlines()[0]}") from exc
            raise
        protocol = with_metadata(spec_protocol(spec), deployment.endpoint)
        if telemetry:
            sampler = TelemetrySampler(workdir / "telemetry.csv", lambda: {r.name: r.pid for r in deployment.replicas()},
                                       interval_s=TELEMETRY_INTERVAL_S).start()
        yield SpecSession(deployment, deployment.endpoint, plan, workdir, cpus.generator, sampler, protocol,
                          token_slo if is_generative(protocol) else None)
    finally:
        if sampler is not None:
            sampler.stop()
        deployment.close()


def search_spec(spec: Any, plan: SweepPlan, out_dir: str | Path, *, cpus: CpuPlan, token_slo: TokenSlo | None,
                progress: Callable[[str], None] = lambda line: None, telemetry: bool = True) -> dict[str, Any]:
    """Deploy ``spec``, search its max rate (generative: its max goodput rate), tear down; return the result's data.

    The data: the search (`SearchResult.to_dict`), the protocol, the objectives judged and, generative, the
    goodput at the max rate. Raises HarnessError when the deployment or its pre-check fails.
    """
    from harness.sweep.maxrate import find_max_rate

    out = Path(out_dir)
    with open_spec(spec, plan, out / "deployment", cpus=cpus, token_slo=token_slo, telemetry=telemetry) as session:
        generative = session.token_slo is not None
        result = find_max_rate(
            session, plan, budget_s=plan.search_budget_s,
            on_start=lambda pre, start: progress(f"pre-check {pre.detail if pre else 'skipped'}; searching from "
                                                 f"{start:.1f} rps (budget {plan.search_budget_s:g} s)"),
            on_probe=lambda p: progress(f"  probe {p.rate_rps:.1f} rps: {p.verdict} ({p.reason})"),
        )
    data: dict[str, Any] = {"spec": spec.name, "protocol": session.protocol.protocol, "generative": generative,
                            "search": result.to_dict()}
    at_max = result.at_max
    if generative:
        data["objectives"] = {**session.token_slo.bounds(context_slo(plan)), "min_good_share": plan.min_good_share}
        data["max_goodput_rate_rps"] = result.max_rate_rps
        data["goodput_rps"] = at_max.goodput_rps if at_max is not None else 0.0
        data["good_share"] = at_max.good_share if at_max is not None else None
        data["sent_rate_rps"] = at_max.sent_rate_rps if at_max is not None else None  # Poisson: near the rate asked
    else:
        data["objectives"] = {"p99_ms": plan.p99_ms, "max_error_rate": plan.max_error_rate}
    data["max_rate_rps"] = result.max_rate_rps
    data["max_rate_text"] = f"{'' if result.converged else 'at least '}{result.max_rate_rps:.1f} rps"
    return data


def context_slo(plan: SweepPlan):
    """Return the plan's `Slo` (its p99 is a good request's end-to-end bound unless the token SLO sets one)."""
    from harness.slo import Slo

    return Slo(plan.p99_ms, plan.max_error_rate)
