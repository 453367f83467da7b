"""PlatformTarget: where a run's service lives, resolved from flags over environment over defaults."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.cli.target import add_platform_arguments, target_from_args
from harness.errors import ConfigError
from harness.platforms.target import ENV_CONTEXT, ENV_DEPLOYMENT, ENV_ENDPOINT, ENV_NAMESPACE, ENV_SPEC, PlatformTarget


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text("name: reference\n")
    return path


def test_local_is_the_default_and_has_no_cluster_options():
    target = PlatformTarget.resolve(environ={ENV_NAMESPACE: "ignored", ENV_SPEC: "/nowhere"})
    assert target == PlatformTarget("local")
    assert not target.is_kubernetes
    assert target.deploy_options() == {} and target.experiment_env(object()) == {}
    assert target.describe() == {"platform": "local", "namespace": None, "endpoint": None, "context": None,
                                 "spec": None}


@pytest.mark.parametrize("flag", ["namespace", "context"])
def test_a_cluster_flag_on_local_is_refused_naming_it(flag):
    with pytest.raises(ConfigError) as err:
        PlatformTarget.resolve("local", **{flag: "x"})
    assert err.value.field == f"--{flag}" and "--platform kubernetes" in str(err.value)


def test_an_endpoint_on_local_is_the_specs_endpoint_target():
    target = PlatformTarget.resolve("local", endpoint="http://10.0.0.7:8080/", environ={ENV_ENDPOINT: "http://other:1"})
    assert target.endpoint == "http://10.0.0.7:8080" and not target.is_kubernetes
    assert target.spec_overlay() == {"target": {"endpoint": "http://10.0.0.7:8080"}}
    assert target.deploy_options() == {} and target.describe()["endpoint"] == "http://10.0.0.7:8080"
    # the environment's endpoint is the in-cluster runner's, never a local target's
    assert PlatformTarget.resolve("local", environ={ENV_ENDPOINT: "http://other:1"}).spec_overlay() == {}
    with pytest.raises(ConfigError) as err:
        PlatformTarget.resolve("local", endpoint="https://10.0.0.7:8443")
    assert err.value.field == "--endpoint" and "http://" in err.value.reason


def test_unknown_platform_is_refused_naming_the_value():
    with pytest.raises(ConfigError) as err:
        PlatformTarget.resolve("nomad")
    assert err.value.field == "--platform" and err.value.value == "nomad"
    assert "local or kubernetes" in str(err.value)


def test_kubernetes_takes_the_runner_environment_when_no_flag_is_given(spec_file):
    environ = {ENV_NAMESPACE: "nightly", ENV_ENDPOINT: "http://reference.nightly.svc:8000/", ENV_SPEC: str(spec_file)}
    target = PlatformTarget.resolve("kubernetes", environ=environ)
    assert (target.namespace, target.endpoint, target.spec_path) == ("nightly", "http://reference.nightly.svc:8000",
                                                                     spec_file)
    assert target.deploy_options() == {"namespace": "nightly", "endpoint": "http://reference.nightly.svc:8000",
                                       "context": None, "apply": False}


def test_kubernetes_flags_win_over_the_environment(spec_file, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("name: other\n")
    environ = {ENV_NAMESPACE: "nightly", ENV_ENDPOINT: "http://env:8000", ENV_SPEC: str(other)}
    target = PlatformTarget.resolve("kubernetes", namespace="adhoc", endpoint="https://localhost:8443",
                                    context="kind-harness", spec=spec_file, environ=environ)
    assert target.describe() == {"platform": "kubernetes", "namespace": "adhoc", "endpoint": "https://localhost:8443",
                                 "context": "kind-harness", "spec": str(spec_file)}


def test_kubernetes_defaults_to_the_harness_namespace_and_the_cluster_dns_endpoint(spec_file):
    target = PlatformTarget.resolve("kubernetes", spec=spec_file, environ={})
    assert target.namespace == "harness" and target.endpoint is None


def test_kubernetes_without_a_spec_says_how_to_give_one():
    with pytest.raises(ConfigError) as err:
        PlatformTarget.resolve("kubernetes", environ={})
    assert err.value.field == "--spec" and ENV_SPEC in str(err.value)


def test_kubernetes_with_a_missing_spec_file_names_the_path(tmp_path):
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as err:
        PlatformTarget.resolve("kubernetes", environ={ENV_SPEC: str(missing)})
    assert err.value.value == str(missing) and "no such file" in str(err.value)


@pytest.mark.parametrize("endpoint", ["reference:8000", "ftp://reference:8000", "localhost"])
def test_kubernetes_endpoint_must_be_an_http_url(spec_file, endpoint):
    with pytest.raises(ConfigError) as err:
        PlatformTarget.resolve("kubernetes", endpoint=endpoint, spec=spec_file, environ={})
    assert err.value.field == "--endpoint" and err.value.value == endpoint


def test_experiment_env_points_the_kubernetes_experiments_at_the_attached_deployment(spec_file):
    target = PlatformTarget.resolve("kubernetes", namespace="nightly", spec=spec_file, environ={})
    deployment = SimpleNamespace(spec=SimpleNamespace(name="reference"), endpoint="http://reference.nightly.svc:8000",
                                 fault_token=None)
    assert target.experiment_env(deployment) == {ENV_NAMESPACE: "nightly", ENV_DEPLOYMENT: "reference",
                                                 ENV_ENDPOINT: "http://reference.nightly.svc:8000",
                                                 "HARNESS_FAULT_TOKEN": ""}
    # a --context reaches chaosk8s too: the experiments act on the cluster the harness watches
    with_context = PlatformTarget.resolve("kubernetes", context="kind-harness", spec=spec_file, environ={})
    assert with_context.experiment_env(deployment)[ENV_CONTEXT] == "kind-harness"
    assert ENV_CONTEXT not in target.experiment_env(deployment)


def test_cli_flags_resolve_through_the_same_rules(spec_file, monkeypatch):
    monkeypatch.setenv(ENV_NAMESPACE, "from-env")
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec")
    add_platform_arguments(parser)
    assert target_from_args(parser.parse_args([])) == PlatformTarget("local")
    target = target_from_args(parser.parse_args(["--platform", "kubernetes", "--spec", str(spec_file)]))
    assert target.namespace == "from-env" and target.spec_path == spec_file
    with pytest.raises(ConfigError, match="--context"):
        target_from_args(parser.parse_args(["--context", "kind-harness"]))
