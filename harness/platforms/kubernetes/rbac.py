"""The least RBAC the in-cluster runner needs, in one place, and how to derive it from API calls.

`RUNNER_RULES` is the only list of permissions the runner's Role grants: pods get/list/delete,
deployments get/list/patch, events list. It is the union of what the Chaos Toolkit activities in
`CHAOS_ACTIVITIES` call (chaostoolkit-kubernetes's and `harness.chaos.kubernetes_activities`, as the
experiments in experiments/kubernetes/ use them) and what `KubernetesDeployment` calls when it
attaches to a running service (`ATTACH_CALLS`). A team's own Deployment (a spec's ``deployment``
target, `harness.platforms.kubernetes.attach`) needs no more: `ATTACH_TARGET_CALLS`, within these
rules. Tests run them against a recording fake API server
and check that the verbs it sees equal these rules, no more and no less, and that the experiment
files use exactly the listed activities; `rules_for_requests` turns recorded HTTP requests into the
rules they need.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Rule",
    "RUNNER_RULES",
    "CHAOS_ACTIVITIES",
    "ATTACH_CALLS",
    "ATTACH_TARGET_CALLS",
    "role_rules",
    "rule_for_request",
    "rules_for_requests",
]


@dataclass(frozen=True, order=True)
class Rule:
    """One permission: ``verb`` on ``resource`` in API group ``group`` ("" is the core group)."""

    group: str
    resource: str
    verb: str


# Chaos Toolkit activities (module.function) that the experiments in experiments/kubernetes/ call:
# chaostoolkit-kubernetes's and the harness's own (`harness.chaos.kubernetes_activities`). A test
# keeps this list equal to what the experiment files use and derives the rules below from the
# requests each activity makes.
CHAOS_ACTIVITIES: tuple[str, ...] = (
    "chaosk8s.pod.actions.terminate_pods",  # pod kill: list the pods by label, delete some
    "chaosk8s.pod.probes.pods_in_conditions",  # steady state: list the pods by label
    "chaosk8s.deployment.probes.deployment_available_and_healthy",  # steady state: list deployments by name
    "harness.chaos.kubernetes_activities.set_startup_delay",  # slow start-up: get, then patch the deployment
    "harness.chaos.kubernetes_activities.restore_deployment",  # its rollback: get, then patch it back
    "harness.chaos.kubernetes_activities.wait_for_crash_loop",  # list the pods by label until one loops
)

# Calls `KubernetesDeployment` makes when attached to a service it did not create (in-cluster).
ATTACH_CALLS: tuple[str, ...] = (
    "AppsV1Api.read_namespaced_deployment",  # rollout state: wait_ready
    "CoreV1Api.list_namespaced_pod",  # replicas()
    "CoreV1Api.read_namespaced_pod",  # kill_replica: confirm the pod before deleting it
    "CoreV1Api.delete_namespaced_pod",  # kill_replica
    "CoreV1Api.list_namespaced_event",  # events()
)

# Calls `AttachedDeployment` makes on a team's Deployment: read it, find and delete its pods; never a
# create, patch or delete of a Deployment.
ATTACH_TARGET_CALLS: tuple[str, ...] = (
    "AppsV1Api.read_namespaced_deployment",  # target.deployment: read it (replicas, port, probes); rollout state
    "AppsV1Api.list_namespaced_deployment",  # target.selector alone: the Deployment whose pods it selects
    "CoreV1Api.list_namespaced_pod",  # its pods, by its own selector
    "CoreV1Api.read_namespaced_pod",  # kill_replica: confirm the pod is its own before deleting it
    "CoreV1Api.delete_namespaced_pod",  # kill_replica
    "CoreV1Api.list_namespaced_event",  # events()
)

# The runner's Role: namespaced, no wildcard, no create, no secrets, no exec.
RUNNER_RULES: tuple[Rule, ...] = (
    Rule("", "events", "list"),
    Rule("", "pods", "delete"),
    Rule("", "pods", "get"),
    Rule("", "pods", "list"),
    Rule("apps", "deployments", "get"),
    Rule("apps", "deployments", "list"),
    Rule("apps", "deployments", "patch"),
)


def role_rules(rules: Iterable[Rule] = RUNNER_RULES) -> list[dict]:
    """Return ``rules`` as Role ``rules`` entries, one per (group, resource), verbs sorted."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        grouped.setdefault((rule.group, rule.resource), set()).add(rule.verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(grouped.items())
    ]


_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def rule_for_request(method: str, path: str, *, watch: bool = False) -> Rule | None:
    """Return the rule an API request needs (as the API server authorises it), or None for a
    non-resource path such as /version. A cluster-wide request's resource is marked ``*cluster*``
    so it can never match a namespaced Role rule."""
    match = _PATH.match(path.split("?", 1)[0])
    if not match:
        return None
    group = "" if match.group("core") else match.group("group")
    resource = match.group("resource")
    name = match.group("name")
    if match.group("sub"):
        resource = f"{resource}/{match.group('sub')}"
    verb = _VERBS.get(method.upper())
    if verb is None:  # GET
        verb = "watch" if watch else ("get" if name else "list")
    if match.group("ns") is None:
        resource = f"{resource}*cluster*"
    return Rule(group, resource, verb)


def rules_for_requests(requests: Iterable[tuple[str, str]]) -> set[Rule]:
    """Return the set of rules that the (method, path) requests need; non-resource paths are skipped."""
    rules = set()
    for method, path in requests:
        query = path.split("?", 1)[1] if "?" in path else ""
        rule = rule_for_request(method, path, watch="watch=true" in query.lower())
        if rule is not None:
            rules.add(rule)
    return rules
