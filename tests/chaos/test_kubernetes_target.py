"""`harness chaos run --platform kubernetes` against a team's own Deployment (a spec's ``deployment``
target) on the recording fake API server: pod-kill through chaosk8s deletes one of that Deployment's
pods by its own labels and gives TTR, both outages and the verdict, measured at the team's server
through its own protocol; a fault needing the reference service's hooks is skipped saying why; no
request changes the Deployment."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.cli import main
from harness.platforms.base import read_events
from harness.platforms.kubernetes.attach import ATTACHED, NO_HOOKS
from harness.platforms.kubernetes.rbac import RUNNER_RULES, rules_for_requests

from ..platforms.kubernetes.team_deployment import NAME, NS, add_team, writes
from .helpers import ROOT

EXPERIMENTS = ROOT / "experiments" / "kubernetes"
DOWN_S = 1.0  # how long the Service answers 503 after one of the team's pods is deleted
SPEC = """\
topology: multi-active
target:
  deployment: team-llm
  protocol: {protocol: http-json, path: /predict, body_template: '{"text": "request $n"}'}
"""


class TeamServer:
    """The team's server behind its Service: ``GET /healthz`` (its readiness path) and ``POST /predict``,
    503 for `DOWN_S` after `down`; every other path is a 404."""

    def __init__(self) -> None:
        self.down_until = 0.0
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.paths.append(f"{self.command} {self.path}")
                known = (self.command, self.path) in (("GET", "/healthz"), ("POST", "/predict"))
                status = 503 if known and time.monotonic() < server.down_until else 200 if known else 404
                body = b'{"ok": true}' if status == 200 else b'{"error": "unavailable"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def down(self) -> None:
        self.down_until = time.monotonic() + DOWN_S

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def team(fake_apiserver, tmp_path, monkeypatch):
    """The team's Deployment in the fake cluster, its server (the Service) going down for a moment when
    one of its pods is deleted, and its spec file; yields (server, spec path)."""
    from harness.chaos import presets

    # the experiment pauses for the recovery timeout after deleting the pod: keep it short
    monkeypatch.setitem(presets.CHAOS_PRESETS, "smoke",
                        dataclasses.replace(presets.CHAOS_PRESETS["smoke"], recovery_timeout_cap_s=2.0))
    add_team(fake_apiserver)
    server = TeamServer()
    handle = fake_apiserver.handle

    def handle_and_drop(method, url, body, content_type=""):
        if method == "DELETE" and f"/namespaces/{NS}/pods/{NAME}-" in url:
            server.down()  # the Service loses the deleted pod's connections
        return handle(method, url, body, content_type)

    monkeypatch.setattr(fake_apiserver, "handle", handle_and_drop)
    spec = tmp_path / "team.yaml"
    spec.write_text(SPEC)
    try:
        yield server, spec
    finally:
        server.stop()


def _chaos_run(experiment: str, spec, server, out) -> int:
    return main(["chaos", "run", str(EXPERIMENTS / f"{experiment}.json"), "--platform", "kubernetes",
                 "--namespace", NS, "--spec", str(spec), "--endpoint", server.url, "--preset", "smoke", "--out", str(out)])


@pytest.mark.slow
def test_pod_kill_on_a_teams_deployment_deletes_one_of_its_pods_and_gives_ttr_outages_and_verdict(
        fake_apiserver, team, tmp_path, capsys):
    server, spec = team
    before = set(fake_apiserver.pod_names(NS))
    ours = {pod for pod in before if pod.startswith(f"{NAME}-")}
    code = _chaos_run("pod-kill", spec, server, tmp_path / "run")
    out = capsys.readouterr()
    assert code in (0, 1), out.err[-3000:]  # a verdict, not an error
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["outcome"] in ("met", "not met", "inconclusive") and result["tier"] == "multi-active"
    assert result["recovered"] is True and result["ttr_s"] > 0 and result["failed_requests"] > 0
    assert result["outage_s"] > 0 and result["unavailability_s"] > 0
    assert f"TTR {result['ttr_s']:.2f} s" in out.out and "unavailability" in out.out
    # chaosk8s deleted one pod, by the Deployment's own selector: one of the team's, never the neighbour's
    deleted = [url.split("?")[0].rsplit("/", 1)[1] for method, url in fake_apiserver.requests
               if method == "DELETE" and "/pods/" in url]
    assert len(deleted) == 1 and deleted[0] in ours and result["target_replica"] == deleted[0]
    assert set(fake_apiserver.pod_names(NS)) - before and before - set(fake_apiserver.pod_names(NS)) == {deleted[0]}
    # measured through the team's server with its protocol and readiness path; no hook to clear
    assert "POST /predict" in server.paths and "GET /healthz" in server.paths
    assert not any("/v2/" in path for path in server.paths if not path.startswith("DELETE /v2/faults"))
    assert set(result["faults_cleared"].values()) == {NO_HOOKS}
    attached = read_events(tmp_path / "run" / "events.jsonl")[0]
    assert attached.type == ATTACHED and attached.extra["attached"]["probes"]["readiness"]["httpGet"]["path"] == "/healthz"
    # nothing of the Deployment was created, patched or deleted, and the runner's Role would do
    assert writes(fake_apiserver) == [] and not [m for m, _ in fake_apiserver.requests if m in ("POST", "PUT", "PATCH")]
    assert rules_for_requests(fake_apiserver.requests) <= set(RUNNER_RULES)


def test_a_fault_needing_the_service_hooks_is_skipped_on_a_deployment_target_saying_why(
        fake_apiserver, team, tmp_path, capsys):
    server, spec = team
    code = _chaos_run("hang", spec, server, tmp_path / "hang")
    assert code == 0
    assert ("hang x multi-active: skipped (skipped on a deployment target: hang-one-pod calls the reference service's "
            "fault hook (/v2/faults/hang), which a deployment target does not have)") in capsys.readouterr().out
    assert json.loads((tmp_path / "hang" / "result.json").read_text())["outcome"] == "skipped"
    assert fake_apiserver.requests == [] and server.paths == []  # skipped before attaching: nothing was asked


def test_a_bad_deployment_target_is_one_line_and_exit_2(fake_apiserver, team, tmp_path, capsys):
    server, spec = team
    spec.write_text(SPEC.replace("deployment: team-llm", "deployment: team-llm\n  selector: app!=team-llm"))
    assert _chaos_run("pod-kill", spec, server, tmp_path / "bad") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target.selector" in err[0] and "app!=team-llm" in err[0], err
    assert writes(fake_apiserver) == []
