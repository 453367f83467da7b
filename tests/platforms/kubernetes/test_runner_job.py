"""The in-cluster runner's job end to end, off-cluster: `harness run --platform kubernetes` attaches to a
Deployment applied on the recording fake API server, drives load and the prober at a stand-in v2
server (the Service), deletes a pod with chaosk8s, and writes the whole report, using nothing beyond
the runner's Role."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness.config import load_spec
from harness.platforms.base import KILLING, NOT_READY, read_events
from harness.platforms.kubernetes import KubernetesClient, RenderOptions, render_manifests
from harness.platforms.kubernetes.rbac import RUNNER_RULES, rules_for_requests
from harness.platforms.target import PlatformTarget

from ...load.conftest import start_standin, stop_standin

NS = "nightly"

pytestmark = pytest.mark.slow


@pytest.fixture
def service():
    server = start_standin()
    try:
        yield server
    finally:
        stop_standin(server)


@pytest.fixture
def applied(fake_apiserver, service, tmp_path, monkeypatch) -> PlatformTarget:
    """A single-replica service applied on the fake cluster, and the target that attaches to it."""
    from harness.chaos import presets

    # the experiments pause for the recovery timeout after injecting: keep each cell short
    monkeypatch.setitem(presets.CHAOS_PRESETS, "smoke", dataclasses.replace(presets.CHAOS_PRESETS["smoke"], recovery_timeout_cap_s=2.0))
    monkeypatch.delenv("HARNESS_FAULT_TOKEN", raising=False)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("topology: single\n")
    client = KubernetesClient()
    try:
        client.apply(render_manifests(load_spec(spec_file), RenderOptions(namespace=NS)))
    finally:
        client.close()
    fake_apiserver.requests.clear()
    return PlatformTarget.resolve("kubernetes", namespace=NS, endpoint=service.url, spec=spec_file, environ={})


def test_tiny_job_on_kubernetes_attaches_kills_a_pod_and_reports_with_the_runner_role_only(
        fake_apiserver, applied, tmp_path):
    from harness.job import COMPLETED, SKIPPED, run_job
    from harness.job.stages import KUBERNETES_SKIPS

    before = set(fake_apiserver.pod_names(NS))
    target = applied

    lines: list[str] = []
    out = tmp_path / "run"
    result = run_job("tiny", out, progress=lines.append, target=target)

    stages = {stage.name: stage for stage in result.stages}
    assert {name: stages[name].status for name in KUBERNETES_SKIPS} == {name: SKIPPED for name in KUBERNETES_SKIPS}
    assert all(stages[name].reason == KUBERNETES_SKIPS[name] for name in KUBERNETES_SKIPS)
    assert [stages[name].status for name in ("deploy", "load", "chaos", "report")] == [COMPLETED] * 4, \
        {name: (s.status, s.reason) for name, s in stages.items()}
    assert result.exit_code in (0, 1)  # a verdict, not an error

    run = json.loads((out / "run.json").read_text())
    assert run["platform"] == "kubernetes" and run["config"]["target"]["namespace"] == NS
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()
    report = (out / "report.md").read_text()
    assert "## Job stages" in report and f"namespace {NS}" in report and KUBERNETES_SKIPS["sweep"] in report

    # the one chaos cell: pod-kill on the applied topology, a real delete of one of the pods
    assert sorted(path.name for path in (out / "chaos").iterdir() if path.is_dir()) == ["pod-kill"]
    cell_dir = out / "chaos" / "pod-kill" / "single"
    cell = json.loads((cell_dir / "result.json").read_text())
    assert cell["target"]["platform"] == "kubernetes" and cell["platform_watch_errors"] == []
    assert cell["faults_cleared"] == {name: "no fault token here (HARNESS_FAULT_TOKEN unset)" for name in fake_apiserver.pod_names(NS)}
    deleted = [url for method, url in fake_apiserver.requests if method == "DELETE" and "/pods/" in url]
    assert len(deleted) == 1
    victim = deleted[0].split("?")[0].rsplit("/", 1)[1]
    assert victim in before
    events = read_events(cell_dir / "events.jsonl")
    victim_events = sorted((e.type, e.reason) for e in events if e.replica == victim and e.type in (KILLING, NOT_READY))
    assert victim_events == [(KILLING, "Killing"), (NOT_READY, "PodDeleted")]  # the cluster's, and the watcher's
    assert len(fake_apiserver.pod_names(NS)) == 1 and set(fake_apiserver.pod_names(NS)) != before  # replaced

    # the attached job changed nothing it did not have to, and needed nothing beyond the Role
    assert not [method for method, _ in fake_apiserver.requests if method in ("POST", "PUT")]
    assert rules_for_requests(fake_apiserver.requests) <= set(RUNNER_RULES)


def test_a_fault_hook_that_refuses_fails_its_cell_as_not_injected(applied, service, tmp_path):
    from harness.chaos.matrix import MatrixPlan
    from harness.workflows.context import RunContext
    from harness.workflows.matrix import run_matrix

    target = applied
    plan = MatrixPlan.from_args(faults="hang", topologies=None, experiments_dir=None, preset="smoke", spec_file=None,
                                retry=False, tier=None, target=target)
    table = run_matrix(plan, RunContext(tmp_path / "chaos", platform="kubernetes"))

    # the stand-in has no fault hooks (404), as a service without the token refuses them (403)
    cell = json.loads((tmp_path / "chaos" / "hang" / "single" / "result.json").read_text())
    assert cell["tier_met"] is False and cell["behaviour_seen"] is False
    assert cell["violations"][0].startswith(f"fault not injected: hang-one-pod (POST {service.url}/v2/faults/hang) "
                                            "answered HTTP 404"), cell["violations"]
    assert table.failed_cells(), table.rows
