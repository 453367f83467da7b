"""`harness render --platform kubernetes`: files in apply order, paths printed, bad input exits 2."""

from __future__ import annotations

import pytest
import yaml

from harness.cli import main


def test_render_writes_one_file_per_object_and_prints_the_paths(tmp_path, capsys):
    out = tmp_path / "k8s"
    code = main(["render", "--platform", "kubernetes", "--topology", "multi-active", "--replicas", "3",
                 "--image", "registry.example.org/harness:1.2.3-cpu", "--namespace", "bench", "--out", str(out),
                 "--runner", "--schedule", "0 3 * * *"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    files = sorted(str(p) for p in out.glob("*.yaml"))
    assert printed == files  # printed in apply order, which is also file-name order
    docs = [yaml.safe_load(open(path)) for path in files]
    assert docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == "bench"
    assert [d["kind"] for d in docs][-2:] == ["Job", "CronJob"]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.org/harness:1.2.3-cpu"
    assert all(d["metadata"].get("namespace", "bench") == "bench" for d in docs)
    assert open(files[2]).read().startswith("# Rendered by harness")


def test_rerender_removes_files_of_the_earlier_render(tmp_path, capsys):
    out = tmp_path / "k8s"
    assert main(["render", "--out", str(out), "--runner"]) == 0
    assert main(["render", "--out", str(out)]) == 0
    kinds = {yaml.safe_load(open(p))["kind"] for p in out.glob("*.yaml")}
    assert "Job" not in kinds and "Deployment" in kinds


def test_render_reads_a_spec_file(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: ranker\ntopology: active-standby\nresources:\n  limits.memory: 6Gi\n  nvidia.com/gpu: 1\n")
    assert main(["render", "--spec", str(spec), "--out", str(tmp_path / "out")]) == 0
    deployment = yaml.safe_load(open(tmp_path / "out" / "02-deployment-ranker.yaml"))
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_bad_input_exits_2_naming_field_and_value(tmp_path, capsys):
    assert main(["render", "--image", "harness:latest", "--out", str(tmp_path)]) == 2
    assert "image='harness:latest'" in capsys.readouterr().err
    spec = tmp_path / "spec.yaml"
    spec.write_text("probes:\n  readiness:\n    path: /v2/health/ready\n    timeoutSeconds: 0.25\n")
    assert main(["render", "--spec", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "probes.readiness.timeoutSeconds=0.25" in capsys.readouterr().err
    assert main(["render", "--topology", "single", "--replicas", "2", "--out", str(tmp_path / "o")]) == 2
    assert "replicas=" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for a bad render


def test_runner_command_is_split_like_a_shell_and_checked(tmp_path, capsys):
    out = tmp_path / "k8s"
    assert main(["render", "--out", str(out), "--runner", "--runner-command",
                 "harness chaos matrix --platform kubernetes --profile nightly --out /results"]) == 0
    job = yaml.safe_load(open(next(out.glob("*-job-*.yaml"))))
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "harness", "chaos", "matrix", "--platform", "kubernetes", "--profile", "nightly", "--out", "/results"]
    assert main(["render", "--out", str(out), "--runner", "--runner-command", "harness 'unclosed"]) == 2
    assert "runner_command=" in capsys.readouterr().err


@pytest.mark.parametrize("command, why", [
    ("exec harness run smoke --platform kubernetes", "exec is a shell builtin"),
    ("harness run smoke --platfrom kubernetes", "harness would refuse it: "),
    ("sh -c 'exec harness run smoke --out \"/results/$(date -u +%s)\" --bogus'", "unrecognized arguments: --bogus"),
    ("sh -c 'exec harness \"unclosed'", "the shell line is not valid"),
    ("", "must name a command"),
    ("harness run nightly --out /results/n", "add --platform kubernetes"),
    ("sh -c 'exec harness chaos matrix --out /results/m'", "add --platform kubernetes"),
])
def test_a_runner_command_that_would_fail_in_the_cluster_fails_the_render(tmp_path, capsys, command, why):
    out = tmp_path / "k8s"
    assert main(["render", "--out", str(out), "--runner", "--runner-command", command]) == 2
    err = capsys.readouterr().err
    assert "runner_command=" in err and why in err, err
    assert not out.exists()


def test_a_shell_runner_command_for_a_shorter_run_renders_as_given(tmp_path):
    out = tmp_path / "k8s"
    script = "exec harness run smoke --platform kubernetes --out /results/smoke-$(date -u +%Y%m%dT%H%M%SZ)"  # as the README
    assert main(["render", "--out", str(out), "--runner", "--runner-command", f"sh -c '{script}'"]) == 0
    job = yaml.safe_load(open(next(out.glob("*-job-*.yaml"))))
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["sh", "-c", script]


@pytest.mark.parametrize("script", [
    "harness run smoke --platform kubernetes --out /results/s; echo done",
    "harness run smoke --platform kubernetes --out /results/s > /results/s.log 2>&1",
    "harness run smoke --platform kubernetes --out /results/s && touch /results/ok",
])
def test_a_shell_line_with_operators_is_the_shells_to_run(tmp_path, script):
    out = tmp_path / "k8s"
    assert main(["render", "--out", str(out), "--runner", "--runner-command", f"sh -c '{script}'"]) == 0
    job = yaml.safe_load(open(next(out.glob("*-job-*.yaml"))))
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["sh", "-c", script]


def test_the_default_runner_command_passes_its_own_check():
    import shlex

    from harness.cli.render import runner_command
    from harness.platforms.kubernetes.options import DEFAULT_RUNNER_COMMAND

    assert runner_command(shlex.join(DEFAULT_RUNNER_COMMAND)) == DEFAULT_RUNNER_COMMAND
