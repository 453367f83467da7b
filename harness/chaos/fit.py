"""Which systems under test an experiment's fault applies to, and why not where it does not.

The kinds of target are `harness.targetspec.TARGET_KINDS`: the reference service takes every fault;
a user's ``command`` every fault that acts from outside its process (kill, SIGTERM, freeze, CPU
throttling through the cgroup quota, an OOM kill through the memory cgroup, network faults in the
balancer); an ``endpoint`` only the network faults in the balancer, since the harness runs no process
of it; a ``deployment`` (a team's Deployment on Kubernetes) what chaostoolkit-kubernetes does to its
pods by their label selector (pod-kill, pod-kill-graceful), never a patch of the Deployment. An experiment may say which kinds it applies to (``extensions[harness].targets``); when it
does not, the kinds follow from its activities (`ACTIVITY_NEEDS`, `MODULE_NEEDS`): a fault hook of
the reference service (over HTTP) needs the reference service (or a command target that serves the same hooks:
``target.fault_hooks``, as the reference generative service does), an action on a replica's process or
cgroup needs a process the harness runs, chaosk8s's pod actions and probes need pods selected by
their labels, an OpenAI-compatible request of `harness.chaos.llm_activities` needs a server that speaks it
(a command or an endpoint target: the reference service does not), a patch of the Deployment (`harness.chaos.kubernetes_activities`' slow starts) needs the
reference service's own, an HTTP action on ``/v2/faults`` (the Kubernetes experiments' fault hooks)
needs the reference service, and an activity this module does not know is assumed to
need the reference service (declare ``targets`` to say otherwise). A spec overlay that changes the
reference service's own settings (``service``: a slow start, a broken build) needs it too.

`harness.workflows.chaos.ChaosRun` and the matrix skip, with the reason, what a target cannot take:
the result's outcome is ``skipped`` (`skipped_result`), never a failure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from harness.chaos.experiment import Experiment
from harness.chaos.result import build_result
from harness.targetspec import TARGET_KINDS

__all__ = ["OUTCOME_SKIPPED", "ACTIVITY_NEEDS", "MODULE_NEEDS", "activity_calls", "hook_calls", "target_kinds",
           "target_fit", "skipped_result"]

OUTCOME_SKIPPED = "skipped"
# the modules whose activities ACTIVITY_NEEDS knows
_MODULES = ("harness.chaos.activities", "harness.chaos.cpuquota", "harness.chaos.memlimit", "harness.chaos.kubernetes_activities")
_ANY, _PROCESS, _HOOKS, _BALANCER, _PODS, _PATCH = "any", "process", "hooks", "balancer", "pods", "patch"
_OPENAI = "openai"
_FAULT_HOOKS = "/v2/faults"  # the reference service's fault hooks, as the Kubernetes experiments call them over HTTP

# what each activity of harness.chaos.activities (and .cpuquota, .memlimit) needs from the system under test
ACTIVITY_NEEDS = {
    "inject_fault": _HOOKS, "delay_probe": _HOOKS, "oom_replica": _HOOKS, "detect_memory_leak": _HOOKS,
    "kill_replica": _PROCESS, "terminate_replica": _PROCESS, "freeze_replica": _PROCESS, "throttle_cpu": _PROCESS,
    "squeeze_memory": _PROCESS,
    "clear_faults": _ANY, "ready_replica_count": _ANY, "all_replicas_ready": _ANY, "wait_for_ready": _ANY,
    "wait_for_events": _ANY, "endpoint_responds_within": _ANY, "availability_over_last": _ANY,
    "set_startup_delay": _PATCH, "restore_deployment": _PATCH, "wait_for_crash_loop": _PODS,
}
# modules whose every activity needs the same: network faults act in the front balancer (any server
# behind it), chaosk8s's pod actions and probes on pods selected by their labels
MODULE_NEEDS = {"harness.chaos.network_activities": _BALANCER, "harness.chaos.llm_activities": _OPENAI,
                "chaosk8s.pod.actions": _PODS,
                "chaosk8s.pod.probes": _PODS, "chaosk8s.deployment.probes": _PODS}
_KINDS_FOR = {_ANY: TARGET_KINDS, _PROCESS: ("reference", "command"), _HOOKS: ("reference",), _PATCH: ("reference",),
              _BALANCER: ("reference", "command", "endpoint"), _PODS: ("reference", "deployment"),
              _OPENAI: ("command", "endpoint")}
_WHY = {
    _HOOKS: "{func} needs the reference service's fault hooks, which {a_kind} target does not have",
    _PROCESS: "{func} acts on a replica's process, and the harness runs no process of {a_kind} target",
    _PATCH: "{func} patches the reference service's Deployment (its start-up), and the harness changes nothing of "
            "{a_kind} target",
    _BALANCER: "{func} acts in the local platform's balancer, which is not in front of {a_kind} target",
    _PODS: "{func} acts on Kubernetes pods by their labels, which {a_kind} target does not have",
    _OPENAI: "{func} sends OpenAI-compatible requests to the replicas, which {a_kind} target does not serve",
}


def activity_calls(document: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield (module, function) of every python activity: steady-state probes, method, rollbacks."""
    hypothesis = document.get("steady-state-hypothesis") or {}
    for activity in [*(hypothesis.get("probes") or []), *(document.get("method") or []), *(document.get("rollbacks") or [])]:
        provider = activity.get("provider") if isinstance(activity, Mapping) else None
        if isinstance(provider, Mapping) and provider.get("type") == "python":
            yield str(provider.get("module")), str(provider.get("func"))


def hook_calls(document: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield (name, URL) of every method action calling the reference service's fault hooks over HTTP
    (a rollback that clears them is harmless anywhere: it is not one)."""
    for activity in document.get("method") or []:
        provider = activity.get("provider") if isinstance(activity, Mapping) else None
        if isinstance(provider, Mapping) and provider.get("type") == "http" and _FAULT_HOOKS in str(provider.get("url")):
            url = str(provider.get("url"))
            yield str(activity.get("name")), url[url.index(_FAULT_HOOKS):]


def target_kinds(experiment: Experiment, *, hooks: bool = False) -> tuple[list[str], dict[str, str]]:
    """Return the target kinds ``experiment`` applies to, and for each kind it does not, why. With ``hooks`` a
    command target serves the harness's fault hooks (``target.fault_hooks``), so what needs them runs on it."""
    hook_kinds = ("reference", "command") if hooks else _KINDS_FOR[_HOOKS]
    declared = experiment.extension.targets
    if declared is not None:
        why = f"experiment {experiment.name} applies to {', '.join(declared)} targets (extensions[harness].targets)"
        return list(declared), {kind: why for kind in TARGET_KINDS if kind not in declared}
    kinds = list(TARGET_KINDS)
    reasons: dict[str, str] = {}

    def exclude(allowed: tuple[str, ...], why: str) -> None:
        for kind in list(kinds):
            if kind not in allowed:
                kinds.remove(kind)
                reasons[kind] = why.format(a_kind=_a(kind))

    if "service" in experiment.extension.spec:
        exclude(_KINDS_FOR[_HOOKS], "it changes the reference service's settings (extensions[harness].spec.service), "
                                    "which {a_kind} target does not have")
    for module, func in activity_calls(experiment.document):
        known = module in MODULE_NEEDS or module in _MODULES and func in ACTIVITY_NEEDS
        need = MODULE_NEEDS.get(module) or (ACTIVITY_NEEDS[func] if known else _HOOKS)
        if not known:
            exclude(_KINDS_FOR[_HOOKS], f"{module}.{func} is not known to work on {{a_kind}} target "
                                        f"(declare extensions[harness].targets if it does)")
        elif need in _WHY:
            exclude(hook_kinds if need == _HOOKS else _KINDS_FOR[need], _WHY[need].replace("{func}", func))
    for name, url in hook_calls(experiment.document):
        exclude(hook_kinds, f"{name} calls the reference service's fault hook ({url}), which {{a_kind}} "
                                    f"target does not have")
    return kinds, reasons


def target_fit(experiment: Experiment, kind: str, *, hooks: bool = False) -> str | None:
    """Return why ``experiment`` cannot run on a ``kind`` target (a sentence), None when it can; ``hooks``: the
    target serves the harness's fault hooks (a command target's ``fault_hooks``)."""
    kinds, reasons = target_kinds(experiment, hooks=hooks)
    return None if kind in kinds else f"skipped on {_a(kind)} target: {reasons[kind]}"


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def skipped_result(experiment: Experiment, *, topology: str, tier: str, preset: str, reason: str,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the result of a run skipped for ``reason``: every figure None, outcome ``skipped``."""
    result = build_result(experiment=experiment.name, fault=experiment.fault, topology=topology, profile=preset,
                          injected_at=None, target_replica=None, recovery=None, verdict=None, tier=tier, journal=None,
                          behaviour_findings=[], aborted=False, phase="setup", extra=extra)
    result.update({"outcome": OUTCOME_SKIPPED, "reasons": [reason], "skipped": True, "behaviour_seen": None,
                   "tier_met": None, "violations": []})
    return result
