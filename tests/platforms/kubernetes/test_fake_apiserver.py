"""The fake API server behaves as the real one does where the tests rely on it: patch semantics
(RFC 7386 JSON merge patch, strategic merge patch) and listing with label and field selectors."""

from __future__ import annotations

import pytest

from harness.config import ServiceSpec
from harness.platforms.kubernetes import KubernetesClient, RenderOptions, render_manifests

from .fake_apiserver import PatchError, merge_patch, strategic_merge_patch

NS = "fake"
NAME = "reference"
PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"


@pytest.mark.parametrize(("target", "patch", "result"), [  # the examples of RFC 7386, appendix A
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_follows_rfc_7386(target, patch, result):
    assert merge_patch(target, patch) == result


def test_strategic_merge_patch_merges_containers_by_name_and_deletes_on_null():
    target = {"metadata": {"annotations": {"keep": "1", "drop": "2"}},
              "spec": {"containers": [{"name": "a", "image": "x", "startupProbe": {"periodSeconds": 1}}, {"name": "b", "image": "y"}]}}
    patch = {"metadata": {"annotations": {"drop": None}},
             "spec": {"containers": [{"name": "a", "args": ["--x"], "startupProbe": None}, {"name": "c", "image": "z"}]}}
    assert strategic_merge_patch(target, patch) == {
        "metadata": {"annotations": {"keep": "1"}},
        "spec": {"containers": [{"name": "a", "image": "x", "args": ["--x"]}, {"name": "b", "image": "y"}, {"name": "c", "image": "z"}]},
    }
    assert target["spec"]["containers"][0]["startupProbe"] == {"periodSeconds": 1}  # not changed in place
    with pytest.raises(PatchError, match="merge key name"):
        strategic_merge_patch(target, {"spec": {"containers": [{"image": "q"}]}})
    with pytest.raises(PatchError, match=r"\$setElementOrder/containers"):
        strategic_merge_patch(target, {"spec": {"$setElementOrder/containers": [{"name": "a"}]}})


@pytest.fixture()
def apps(fake_apiserver):
    client = KubernetesClient()
    try:
        client.apply(render_manifests(ServiceSpec(topology="multi-active", replicas=2), RenderOptions(namespace=NS)))
    finally:
        client.close()
    from kubernetes import client as k8s, config

    config.load_kube_config()
    return k8s.AppsV1Api()


def test_deployments_are_listed_by_namespace_and_selectors(apps):
    assert [d.metadata.name for d in apps.list_namespaced_deployment(NS).items] == [NAME]
    assert [d.metadata.name for d in apps.list_namespaced_deployment(NS, field_selector=f"metadata.name={NAME}").items] == [NAME]
    assert apps.list_namespaced_deployment(NS, field_selector="metadata.name=other").items == []
    assert len(apps.list_namespaced_deployment(NS, label_selector=f"app.kubernetes.io/name={NAME}").items) == 1
    assert apps.list_namespaced_deployment(NS, label_selector=f"app.kubernetes.io/name!={NAME}").items == []
    assert apps.list_namespaced_deployment("elsewhere").items == []
    listed = apps.list_namespaced_deployment(NS).items[0]
    assert listed.status.available_replicas == listed.spec.replicas == 2


def test_unsupported_selector_is_a_bad_request(apps):
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as caught:
        apps.list_namespaced_deployment(NS, label_selector="tier in (a,b)")
    assert caught.value.status == 400


def test_a_client_patch_keeps_the_container_and_a_null_deletes_the_annotation(apps, fake_apiserver):
    image = fake_apiserver.objects[PATH]["spec"]["template"]["spec"]["containers"][0]["image"]
    container = fake_apiserver.objects[PATH]["spec"]["template"]["spec"]["containers"][0]["name"]
    body = {"metadata": {"annotations": {"harness.io/x": "1"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": container, "args": ["--y"]}]}}}}
    apps.patch_namespaced_deployment(NAME, NS, body)  # the client sends a strategic merge patch
    patched = fake_apiserver.objects[PATH]
    assert patched["metadata"]["annotations"]["harness.io/x"] == "1"
    assert patched["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert patched["spec"]["template"]["spec"]["containers"][0]["args"] == ["--y"]
    assert len(fake_apiserver.pod_names(NS)) == 3  # the ReplicaSet scaled up

    apps.patch_namespaced_deployment(NAME, NS, {"metadata": {"annotations": {"harness.io/x": None}}},
                                     _content_type="application/merge-patch+json")
    assert "harness.io/x" not in (fake_apiserver.objects[PATH]["metadata"].get("annotations") or {})
