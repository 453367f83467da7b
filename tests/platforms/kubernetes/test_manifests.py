"""Rendered manifests: valid against the Kubernetes schema (offline, strict), faithful to the spec,
hardened, and rejecting what Kubernetes cannot take with a ConfigError naming the field."""

from __future__ import annotations

import math
import shlex

import kubernetes_validate
import pytest

from harness.cli import build_parser
from harness.config import ServiceSpec
from harness.errors import ConfigError
from harness.platforms.kubernetes import MEASURED_LOAD_TIME_S, RenderOptions, render_manifests
from harness.platforms.kubernetes.manifests import CONTAINER_UID, LOAD_LABEL
from harness.validation import validate_model

# The newest schema kubernetes-validate ships, and an older one still in wide use on managed clusters.
SCHEMA_VERSIONS = ("1.30.0", "1.37.0")

CASES = {
    "single": ({"topology": "single"}, RenderOptions()),
    "active-standby": ({"topology": "active-standby"}, RenderOptions(hpa_metric="rps")),
    "multi-active-gpu-runner": (
        {"topology": "multi-active", "replicas": 3, "resources": {"limits.memory": "16Gi", "limits.cpu": "4", "nvidia.com/gpu": 1},
         "service": {"device": "cuda", "precision": "bf16"}},
        RenderOptions(image="registry.example.org/ml/harness@sha256:" + "a" * 64, runner=True, schedule="0 2 * * *", max_replicas=8),
    ),
    "runner-emptydir": ({"topology": "multi-active"}, RenderOptions(runner=True, results_volume="emptyDir", hpa_metric="rps")),
    "runner-locust-workers": ({"topology": "multi-active"}, RenderOptions(runner=True, schedule="@daily", load_workers=4)),
    "autoscaled-drill": (
        {"topology": "multi-active", "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
         "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "targetRequestsPerSecond": 12.5, "scaleDownStabilizationSeconds": 8},
         "rate_limit": {"rate": 60, "burst": 20},
         "service": {"start_faults": [{"kind": "crash", "params": {"delay_s": 5}}]}},
        RenderOptions(),
    ),
}


def _by_kind(objects: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


def _render(name: str) -> tuple[ServiceSpec, list[dict]]:
    data, options = CASES[name]
    spec = validate_model(ServiceSpec, data)
    return spec, render_manifests(spec, options)


def _pod_specs(objects: list[dict]) -> list[dict]:
    specs = []
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            specs.append(obj["spec"]["template"]["spec"])
        elif obj["kind"] == "CronJob":
            specs.append(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return specs


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_validates_against_the_schema(case, version):
    _, objects = _render(case)
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)  # raises ValidationError with the path


def test_all_kinds_are_rendered():
    _, objects = _render("multi-active-gpu-runner")
    assert sorted(_by_kind(objects)) == sorted([
        "Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
        "NetworkPolicy", "Role", "RoleBinding", "ConfigMap", "PersistentVolumeClaim", "Job", "CronJob",
    ])


def test_deployment_follows_the_spec():
    spec, objects = _render("multi-active-gpu-runner")
    deployment = _by_kind(objects)["Deployment"][0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert pod["terminationGracePeriodSeconds"] == 30
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1}
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    for field, probe in (("livenessProbe", spec.probes.liveness), ("readinessProbe", spec.probes.readiness)):
        rendered = container[field]
        assert rendered["httpGet"]["path"] == probe.path
        assert rendered["periodSeconds"] == probe.period_s and rendered["timeoutSeconds"] == probe.timeout_s
        assert rendered["failureThreshold"] == probe.failure_threshold and rendered["successThreshold"] == probe.success_threshold
    args = container["args"]
    assert args[args.index("--device") + 1] == "cuda" and args[args.index("--precision") + 1] == "bf16"
    assert args[args.index("--torch-threads") + 1] == "4"  # pinned to the CPU limit, not the node's cores


def test_startup_probe_fits_the_measured_load_time():
    default = _by_kind(render_manifests(ServiceSpec()))["Deployment"][0]
    startup = default["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    budget_s = startup["periodSeconds"] * startup["failureThreshold"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert budget_s >= 4 * MEASURED_LOAD_TIME_S and budget_s >= 30
    slow = _by_kind(render_manifests(ServiceSpec(), RenderOptions(load_time_s=45)))["Deployment"][0]
    slow_probe = slow["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert slow_probe["failureThreshold"] == math.ceil(4 * 45 / slow_probe["periodSeconds"])
    assert "45 s" in slow["metadata"]["annotations"]["harness.io/note"]
    # a startup probe in the spec wins, field for field
    spec = validate_model(ServiceSpec, {"probes": {"startup": {"path": "/v2/health/live", "periodSeconds": 5, "failureThreshold": 7}}})
    own = _by_kind(render_manifests(spec))["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert (own["httpGet"]["path"], own["periodSeconds"], own["failureThreshold"]) == ("/v2/health/live", 5, 7)


def test_pods_are_hardened():
    _, objects = _render("multi-active-gpu-runner")
    pods = _pod_specs(objects)
    assert len(pods) == 3  # Deployment, Job, CronJob
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == CONTAINER_UID
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["privileged"] is False
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]) <= set(container["resources"]["limits"])
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    service_pod, job_pod = pods[0], pods[1]
    assert service_pod["automountServiceAccountToken"] is False
    assert job_pod["automountServiceAccountToken"] is True and job_pod["serviceAccountName"] == "reference-runner"
    assert job_pod["restartPolicy"] == "Never"


def test_network_policy_admits_only_the_load_label():
    _, objects = _render("runner-emptydir")
    policies = {p["metadata"]["name"]: p for p in _by_kind(objects)["NetworkPolicy"]}
    service_policy = policies["reference"]["spec"]
    assert service_policy["policyTypes"] == ["Ingress"]
    sources = service_policy["ingress"][0]["from"]
    assert sources == [{"podSelector": {"matchLabels": {LOAD_LABEL: "true"}}}, {"namespaceSelector": {"matchLabels": {LOAD_LABEL: "true"}}}]
    assert policies["reference-runner"]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "reference", "app.kubernetes.io/component": "runner"}},
        "policyTypes": ["Ingress"],
    }
    job = _by_kind(objects)["Job"][0]
    assert job["spec"]["template"]["metadata"]["labels"][LOAD_LABEL] == "true"  # the runner may call the service
    assert job["spec"]["template"]["spec"]["volumes"][1] == {"name": "results", "emptyDir": {"sizeLimit": "2Gi"}}


def test_autoscaler_and_disruption_budget_per_topology():
    cpu = _by_kind(render_manifests(ServiceSpec(topology="multi-active", replicas=4)))
    hpa = cpu["HorizontalPodAutoscaler"][0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (4, 8)
    assert hpa["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert cpu["PodDisruptionBudget"][0]["spec"]["minAvailable"] == 3
    rps = _by_kind(render_manifests(ServiceSpec(topology="multi-active"), RenderOptions(hpa_metric="rps")))
    metric = rps["HorizontalPodAutoscaler"][0]["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "100"}
    standby = _by_kind(_render("active-standby")[1])
    assert "HorizontalPodAutoscaler" not in standby  # a fixed pair: nothing to autoscale
    assert standby["Deployment"][0]["spec"]["replicas"] == 2
    assert "both replicas take traffic" in standby["Deployment"][0]["metadata"]["annotations"]["harness.io/note"]
    single = _by_kind(_render("single")[1])
    assert single["PodDisruptionBudget"][0]["spec"]["maxUnavailable"] == 1


def test_runner_job_and_cronjob():
    _, objects = _render("multi-active-gpu-runner")
    kinds = _by_kind(objects)
    job, cron = kinds["Job"][0], kinds["CronJob"][0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["sh", "-c"]
    # the main job attached to the applied Deployment, into a timestamped folder on the results volume
    script = container["command"][2].replace("$(date -u +%Y%m%dT%H%M%SZ)", "20261202T020000Z")
    words = shlex.split(script)
    assert words[:2] == ["exec", "harness"]
    args = build_parser().parse_args(words[2:])
    assert (args.command, args.preset, args.platform) == ("run", "nightly", "kubernetes")
    assert str(args.out) == "/results/20261202T020000Z" and args.spec is None  # the spec comes from HARNESS_SPEC
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HARNESS_ENDPOINT"] == "http://reference.harness.svc.cluster.local:8000"
    assert env["CHAOSTOOLKIT_IN_POD"] == "true" and env["HARNESS_SPEC"] == "/etc/harness/spec.yaml"
    assert job["spec"]["backoffLimit"] == 0
    assert cron["spec"]["schedule"] == "0 2 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["template"] == job["spec"]["template"]
    spec_map = kinds["ConfigMap"][0]["data"]["spec.yaml"]
    assert "weights_dir" not in spec_map and "fault_token" not in spec_map and "topology: multi-active" in spec_map
    assert kinds["PersistentVolumeClaim"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"


def test_schedule_alone_renders_no_immediate_job():
    kinds = _by_kind(render_manifests(ServiceSpec(), RenderOptions(schedule="@daily")))
    assert "CronJob" in kinds and "Job" not in kinds and "Role" in kinds


def test_checkov_suppressions_carry_a_reason_and_digest_images_need_none():
    _, objects = _render("multi-active-gpu-runner")
    for obj in objects:
        for key, value in obj["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert check.startswith("CKV_K8S_") and len(reason) > 30, value
    deployment = _by_kind(objects)["Deployment"][0]
    assert not any("CKV_K8S_43" in v for v in deployment["metadata"]["annotations"].values())  # pinned by digest


def test_the_spec_autoscaling_and_strategy_are_rendered_as_written():
    spec = validate_model(ServiceSpec, {
        "topology": "multi-active", "strategy": {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 5, "targetRequestsPerSecond": 40,
                        "scaleUpStabilizationSeconds": 15, "scaleDownStabilizationSeconds": 120},
        "service": {"start_faults": [{"kind": "slow-inference", "params": {"delay_ms": 20}}]},
    })
    objects = _by_kind(render_manifests(spec, RenderOptions(hpa_metric="cpu", max_replicas=9)))
    hpa = objects["HorizontalPodAutoscaler"][0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)  # the spec's, not the render options'
    assert hpa["metrics"][0]["pods"]["target"] == {"type": "AverageValue", "averageValue": "40"}
    assert hpa["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 15}, "scaleDown": {"stabilizationWindowSeconds": 120}}
    deployment = objects["Deployment"][0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}}
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--start-fault") + 1] == 'slow-inference:{"delay_ms":20}'
    cpu = validate_model(ServiceSpec, {"topology": "multi-active", "resources": {"requests.cpu": "1"},
                                       "autoscaling": {"maxReplicas": 4, "targetCPUUtilizationPercentage": 70}})
    metric = _by_kind(render_manifests(cpu))["HorizontalPodAutoscaler"][0]["spec"]["metrics"][0]
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    single = _by_kind(render_manifests(ServiceSpec()))["Deployment"][0]["spec"]["strategy"]
    assert single == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}  # as locally


def test_a_fractional_cpu_target_is_refused_naming_it():
    spec = validate_model(ServiceSpec, {"topology": "multi-active", "resources": {"requests.cpu": "1"},
                                        "autoscaling": {"maxReplicas": 4, "targetCPUUtilizationPercentage": 70.5}})
    with pytest.raises(ConfigError) as caught:
        render_manifests(spec)
    assert (caught.value.field, caught.value.value) == ("autoscaling.targetCPUUtilizationPercentage", 70.5)


@pytest.mark.parametrize(
    ("data", "options", "field", "value"),
    [
        ({"probes": {"liveness": {"path": "/v2/health/live", "periodSeconds": 0.5}}}, RenderOptions(), "probes.liveness.periodSeconds", 0.5),
        ({"service": {"port": 0}}, RenderOptions(), "service.port", 0),
        ({"service": {"port": 80}}, RenderOptions(), "service.port", 80),
        ({"service": {"device": "cuda"}}, RenderOptions(), "service.device", "cuda"),
        ({"resources": {"limits.memory": None}}, RenderOptions(), "resources.limits.memory", None),
        ({}, RenderOptions(image="harness"), "image", "harness"),
        ({}, RenderOptions(image="harness:latest"), "image", "harness:latest"),
        ({}, RenderOptions(namespace="Bad_NS"), "namespace", "Bad_NS"),
        ({}, RenderOptions(schedule="every night"), "schedule", "every night"),
        ({}, RenderOptions(load_time_s=0), "load_time_s", 0),
        ({}, RenderOptions(load_workers=2), "load_workers", 2),  # the workers' master is the runner
        ({}, RenderOptions(runner=True, load_workers=-1), "load_workers", -1),
        ({"topology": "multi-active", "replicas": 3}, RenderOptions(max_replicas=2), "max_replicas", 2),
    ],
)
def test_bad_input_names_the_field_and_value(data, options, field, value):
    spec = validate_model(ServiceSpec, data)
    with pytest.raises(ConfigError) as caught:
        render_manifests(spec, options)
    assert (caught.value.field, caught.value.value) == (field, value)
