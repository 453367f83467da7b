"""The system under test in a service spec: a command target, an endpoint target, and their validation
(one ConfigError naming the field and the value), relative paths read from the spec file's folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.config import ServiceSpec, load_spec, load_spec_data
from harness.errors import ConfigError
from harness.validation import validate_model

PYTHON = sys.executable


def _spec(target: dict, **fields) -> ServiceSpec:
    return validate_model(ServiceSpec, {"target": target, **fields})


def _error(target: dict, **fields) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        _spec(target, **fields)
    assert "\n" not in str(err.value)  # one line
    return err.value


def test_no_target_is_the_reference_service():
    spec = validate_model(ServiceSpec, {})
    assert spec.target is None and spec.target_kind == "reference"
    assert spec.probes.readiness.path == "/v2/health/ready"


def test_a_command_target_substitutes_port_and_venv_and_takes_its_probe_paths(tmp_path):
    spec = _spec({"command": ["{venv}/bin/python", "server.py", "--port", "{port}"], "venv": str(tmp_path),
                  "workdir": str(tmp_path), "env": {"LISTEN": "127.0.0.1:{port}"},
                  "readiness_path": "/health", "liveness_path": "/alive", "startup_timeout_s": 30})
    target = spec.target
    assert spec.target_kind == "command"
    assert target.argv(8123) == [f"{tmp_path.resolve()}/bin/python", "server.py", "--port", "8123"]
    assert target.environment(8123) == {"LISTEN": "127.0.0.1:8123"}
    assert (spec.probes.readiness.path, spec.probes.liveness.path) == ("/health", "/alive")
    # the startup timeout is a startup probe: 30 s at one probe a second, on the liveness path
    assert (spec.probes.startup.path, spec.probes.startup.period_s, spec.probes.startup.failure_threshold) == ("/alive", 1.0, 30)
    # the spec survives its own dump (what a rollout or a chaos overlay does with it)
    again = validate_model(ServiceSpec, spec.model_dump(mode="json", by_alias=True))
    assert again.target == target and again.probes == spec.probes


def test_an_endpoint_target_is_routed_by_readiness_only():
    spec = _spec({"endpoint": "http://10.0.0.7:8080/", "readiness_path": "/health"})
    assert spec.target_kind == "endpoint" and spec.target.endpoint == "http://10.0.0.7:8080"
    assert spec.target.endpoint_address() == ("10.0.0.7", 8080)
    assert spec.probes.readiness.path == "/health" and spec.probes.liveness is None and spec.probes.startup is None
    assert _spec({"endpoint": "http://server.local"}).target.endpoint_address() == ("server.local", 80)


@pytest.mark.parametrize("target, field, words", [
    ({"command": ["python", "server.py"]}, "target.command", "no {port} placeholder"),
    ({"command": []}, "target.command", "an empty argv"),
    ({"command": ["", "{port}"]}, "target.command", "argv[0]"),
    ({"command": ["{venv}/bin/python", "-m", "srv", "{port}"]}, "target.command", "target.venv is not set"),
    ({"command": ["srv", "{port}"], "endpoint": "http://h:1"}, "target.command", "exactly one of command"),
    ({}, "target.command", "exactly one of command"),
    ({"endpoint": "https://h:8443"}, "target.endpoint", "https is not supported"),
    ({"endpoint": "h:8080"}, "target.endpoint", "http:// URL"),
    ({"endpoint": "http://h:99999"}, "target.endpoint", "port"),
    ({"endpoint": "http://h:80/v1"}, "target.endpoint", "root"),
    ({"endpoint": "http://h:80", "env": {"A": "1"}}, "target.env", "only a command target"),
    ({"command": ["srv", "{port}"], "readiness_path": "health"}, "target.readiness_path", "must start with '/'"),
    ({"command": ["srv", "{port}"], "startup_timeout_s": 0}, "target.startup_timeout_s", "greater than 0"),
    ({"command": ["srv", "{port}"], "working_dir": "."}, "target.working_dir", "unknown field"),
])
def test_a_bad_target_is_one_error_naming_the_field_and_value(target, field, words):
    err = _error(target)
    assert err.field == field and words in err.reason, str(err)


def test_a_missing_working_directory_is_named_with_its_absolute_path(tmp_path):
    err = _error({"command": ["srv", "{port}"], "workdir": str(tmp_path / "nowhere")})
    assert err.field == "target.workdir" and str(tmp_path / "nowhere") in str(err) and "no such directory" in err.reason


def test_an_endpoint_target_is_one_server_whatever_tier_its_topology_claims():
    for topology in ("single", "active-standby", "multi-active"):
        spec = _spec({"endpoint": "http://h:80"}, topology=topology)
        assert spec.replica_count == 1 and spec.topology == topology
    err = _error({"endpoint": "http://h:80"}, topology="multi-active", replicas=2)
    assert err.field == "replicas" and err.value == "2" and "never replicated or scaled" in err.reason


def test_relative_paths_are_read_from_the_spec_files_folder_not_the_cwd(tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    (folder / "server").mkdir(parents=True)
    (folder / "venv").mkdir()
    spec_file = folder / "mine.yaml"
    spec_file.write_text("target:\n  command: ['{venv}/bin/python', 'server.py', '--port', '{port}']\n"
                         "  venv: venv\n  workdir: server\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the user stands somewhere else: the paths still mean the spec's folder
    spec = load_spec(spec_file)
    assert spec.target.workdir == (folder / "server").resolve() and spec.target.venv == (folder / "venv").resolve()
    assert spec.target.argv(1)[0] == f"{(folder / 'venv').resolve()}/bin/python"
    assert load_spec_data(spec_file)["target"]["workdir"] == str(folder.resolve() / "server")


def test_a_command_runs_in_the_spec_files_folder_unless_told_otherwise(tmp_path, monkeypatch):
    spec_file = tmp_path / "mine.yaml"
    spec_file.write_text("target:\n  command: [python, server.py, '{port}']\n")
    monkeypatch.chdir(Path("/"))
    assert load_spec(spec_file).target.workdir == tmp_path.resolve()


def test_a_relative_path_in_spec_data_is_read_from_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "server").mkdir()
    monkeypatch.chdir(tmp_path)
    assert _spec({"command": ["srv", "{port}"], "workdir": "server"}).target.workdir == (tmp_path / "server").resolve()


def test_a_spec_file_with_a_missing_relative_directory_names_it_and_the_file(tmp_path):
    spec_file = tmp_path / "mine.yaml"
    spec_file.write_text("target:\n  command: [python, server.py, '{port}']\n  workdir: gone\n")
    with pytest.raises(ConfigError) as err:
        load_spec(spec_file)
    assert err.value.field == "target.workdir" and str(tmp_path / "gone") in str(err.value)
    assert str(spec_file) in str(err.value)


def test_the_shipped_example_specs_are_valid_and_complete_their_probes_from_the_target():
    folder = Path(__file__).resolve().parents[1] / "experiments" / "targets"
    command = load_spec(folder / "command-target.yaml")
    assert command.target_kind == "command" and command.target.workdir == folder.resolve()
    assert (command.target.workdir / "example_server.py").is_file()
    assert command.target.argv(9) == [PYTHON, "example_server.py", "--port", "9"]  # {python}: the harness's own
    # probes given with timings only take the target's paths; the startup timeout is a startup probe
    assert (command.probes.readiness.path, command.probes.liveness.path) == ("/health", "/health")
    assert command.probes.readiness.period_s == 0.25 and command.probes.startup.failure_threshold == 30
    endpoint = load_spec(folder / "endpoint-target.yaml")
    assert endpoint.target_kind == "endpoint" and endpoint.probes.readiness.path == "/health"


def test_the_kubernetes_platform_refuses_a_target_naming_it(tmp_path):
    from harness.platforms import deploy
    from harness.platforms.kubernetes.render import render_manifests

    spec = _spec({"command": ["srv", "{port}"], "workdir": str(tmp_path)})
    for attempt in (lambda: deploy(spec, platform="kubernetes", workdir=tmp_path), lambda: render_manifests(spec)):
        with pytest.raises(ConfigError) as err:
            attempt()
        assert err.value.field == "target" and err.value.value == "command" and "local platform" in err.value.reason


def test_a_target_names_the_protocol_its_server_speaks(tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "bodies.jsonl").write_text('{"text": "hi"}\n')
    (folder / "mine.yaml").write_text(
        "target:\n  command: ['{python}', 'server.py', '--port', '{port}']\n"
        "  protocol: {protocol: http-json, path: /predict, bodies_file: bodies.jsonl}\n")
    monkeypatch.chdir(tmp_path)  # the bodies file is the spec folder's, as its other paths
    spec = load_spec("specs/mine.yaml")
    assert spec.target.protocol.protocol == "http-json" and spec.target.protocol.path == "/predict"
    assert spec.target.protocol.bodies_file == str(folder / "bodies.jsonl")
    chat = _spec({"endpoint": "http://127.0.0.1:8000", "protocol": {"protocol": "openai-chat", "model": "tiny"}})
    assert chat.target.protocol.stream and chat.target.protocol.model == "tiny"
    assert _spec({"endpoint": "http://127.0.0.1:8000"}).target.protocol is None  # oip-v2 to the spec's model


@pytest.mark.parametrize("protocol, field", [
    ({"protocol": "grpc"}, "protocol"),
    ({"protocol": "openai-chat", "body_template": "{}"}, "body_template"),
    ({"protocol": "http-json"}, "path"),
    ({"protocol": "openai-chat", "max_tokens": 0}, "max_tokens"),
])
def test_a_bad_target_protocol_is_one_error_naming_the_field(protocol, field):
    err = _error({"endpoint": "http://127.0.0.1:8000", "protocol": protocol})
    assert field in err.field


# --- a deployment target: an existing Kubernetes Deployment, attached to as it is --------------------


def test_a_deployment_target_names_an_existing_deployment_and_keeps_its_own_probes():
    spec = _spec({"deployment": "team-llm", "selector": "app=team-llm,tier in (serving, canary),!canary", "port": 8080,
                  "service": "team-llm:80", "protocol": {"protocol": "openai-chat", "model": "tiny"}}, topology="multi-active")
    assert spec.target_kind == "deployment" and spec.target.service_address("team-llm", 8080) == ("team-llm", 80)
    # its probes are its pod template's, read when the harness attaches: none of the harness's here
    assert (spec.probes.readiness, spec.probes.liveness, spec.probes.startup) == (None, None, None)
    assert _spec({"selector": "app=x"}).target.service_address("x", 8000) == ("x", 8000)
    again = validate_model(ServiceSpec, spec.model_dump(mode="json", by_alias=True))
    assert again.target == spec.target and again.probes == spec.probes


def test_a_selector_reads_as_kubernetes_reads_it():
    from harness.targetspec import selector_matches, selector_terms

    terms = selector_terms("app=x, tier in (a, b),!canary,zone,env!=dev")
    assert terms == [("app", "=", ("x",)), ("tier", "in", ("a", "b")), ("canary", "!exists", ()), ("zone", "exists", ()),
                     ("env", "!=", ("dev",))]
    assert selector_matches(terms, {"app": "x", "tier": "b", "zone": "eu"})
    for labels in ({"app": "x", "tier": "c", "zone": "eu"}, {"app": "x", "tier": "a", "zone": "eu", "canary": "1"},
                   {"app": "x", "tier": "a"}, {"app": "x", "tier": "a", "zone": "eu", "env": "dev"}):
        assert not selector_matches(terms, labels), labels


@pytest.mark.parametrize("target, fields, field, words", [
    ({"deployment": "Team_LLM"}, {}, "target.deployment", "not a Deployment name"),
    ({"selector": ""}, {}, "target.selector", "an empty selector"),
    ({"selector": "app!=x,tier notin (a)"}, {}, "target.selector", "every other pod in the namespace"),
    ({"selector": "app in ()"}, {}, "target.selector", "not a label value"),
    ({"selector": "app x"}, {}, "target.selector", "not a label key"),
    ({"deployment": "d", "command": ["srv", "{port}"]}, {}, "target.deployment", "takes no command or endpoint"),
    ({"selector": "app=x", "endpoint": "http://h:1"}, {}, "target.selector", "takes no command or endpoint"),
    ({"deployment": "d", "env": {"A": "1"}}, {}, "target.env", "only a command target"),
    ({"deployment": "d", "liveness_path": "/live"}, {}, "target.liveness_path", "its probes are read from it"),
    ({"endpoint": "http://h:1", "port": 80}, {}, "target.port", "only a deployment target"),
    ({"command": ["srv", "{port}"], "service": "svc"}, {}, "target.service", "only a deployment target"),
    ({"deployment": "d", "service": "svc:99999"}, {}, "target.service", "NAME or NAME:PORT"),
    ({"deployment": "d", "port": 0}, {}, "target.port", "greater than or equal to 1"),
    ({"deployment": "d"}, {"topology": "multi-active", "replicas": 3}, "replicas", "the replicas its Deployment says"),
    ({"deployment": "d"}, {"topology": "multi-active", "autoscaling": {"minReplicas": 2, "maxReplicas": 4,
                                                                      "targetRequestsPerSecond": 50}},
     "autoscaling", "scaled by its own autoscaler"),
])
def test_a_bad_deployment_target_is_one_error_naming_the_field_and_value(target, fields, field, words):
    err = _error(target, **fields)
    assert err.field == field and words in err.reason, str(err)


def test_the_shipped_kubernetes_deployment_example_is_valid():
    spec = load_spec(Path(__file__).resolve().parents[1] / "experiments" / "targets" / "kubernetes-deployment.yaml")
    assert spec.target_kind == "deployment" and spec.target.deployment and spec.target.protocol is not None
