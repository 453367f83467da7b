"""The supervisor's rules on their own (back-off, probe thresholds, routing choice, HTTP framing), and the
startup probe against a real stub replica."""

from __future__ import annotations

import asyncio
import socket
import sys
from urllib.parse import urlsplit

import psutil
import pytest

from harness.config import Probe
from harness.errors import ConfigError
from harness.platforms import deploy
from harness.platforms.local.balancer import Router
from harness.platforms.local.http1 import HttpError, parse_head, read_request_body, response_framing
from harness.platforms.local.probes import ProbeTracker
from harness.platforms.local.replica import backoff_delay_s


def test_backoff_is_immediate_then_doubles_from_base_to_cap():
    assert [backoff_delay_s(n, 10, 300) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_readiness_tracker_flips_only_after_the_thresholds():
    tracker = ProbeTracker(Probe(path="/", failureThreshold=3, successThreshold=2), initial=False)
    assert [tracker.record(ok) for ok in (True, False, True, True)] == [None, None, None, True]
    assert [tracker.record(ok) for ok in (False, False, True, False, False, False)] == [None, None, None, None, None, False]


def test_liveness_tracker_starts_alive_and_fails_after_failure_threshold_in_a_row():
    tracker = ProbeTracker(Probe(path="/", failureThreshold=2), initial=True)
    assert [tracker.record(ok) for ok in (False, True, False, False)] == [None, None, None, False]


def _router(topology: str, ready: list[bool]) -> Router:
    router = Router(topology)
    router.update([{"name": f"r{i}", "host": "127.0.0.1", "port": 1000 + i, "ready": r} for i, r in enumerate(ready)])
    return router


def test_router_spreads_over_ready_replicas_preferring_the_least_busy():
    router = _router("multi-active", [True, False, True])
    assert {router.pick().name for _ in range(10)} == {"r0", "r2"}
    router.backends[0].inflight = 5
    assert {router.pick().name for _ in range(10)} == {"r2"}


def test_router_active_standby_prefers_the_primary_and_has_nothing_when_none_is_ready():
    assert _router("active-standby", [True, True]).pick().name == "r0"
    assert _router("active-standby", [False, True]).pick().name == "r1"
    assert _router("single", [False]).pick() is None
    router = _router("multi-active", [True, True])
    assert router.pick(exclude=(router.backends[0],)).name == "r1"


def test_http_heads_and_bodies_are_framed_as_http_1_1_says():
    head = parse_head(b"POST /v2/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")

    async def body() -> bytes:  # the reader belongs to the loop asyncio.run creates, whatever ran before
        reader = asyncio.StreamReader()
        reader.feed_data(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n")
        return await read_request_body(reader, head)

    assert asyncio.run(body()) == b"abcde"
    response = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n")
    assert response_framing(response, b"GET") == ("length", 12)
    assert response_framing(response, b"HEAD") == ("none", 0)
    assert response_framing(parse_head(b"HTTP/1.1 204 No Content\r\n\r\n"), b"GET") == ("none", 0)
    assert response_framing(parse_head(b"HTTP/1.0 200 OK\r\n\r\n"), b"GET") == ("close", 0)
    with pytest.raises(HttpError):
        parse_head(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")


def test_an_unknown_platform_is_refused_naming_it(tmp_path, stub_spec):
    with pytest.raises(ConfigError, match="platform='nomad'"):
        deploy(stub_spec(), platform="nomad", workdir=tmp_path)


def test_startup_probe_holds_back_liveness_and_readiness_until_it_passes(deploy_local, stub_spec, stub_command):
    spec = stub_spec(probes={"startup": {"path": "/", "initialDelaySeconds": 1.0, "periodSeconds": 0.2}})
    deployment = deploy_local(spec, command=stub_command)
    deployment.wait_ready(timeout_s=30)
    events = deployment.events()
    started = next(e for e in events if e.type == "Started")
    ready = next(e for e in events if e.type == "Ready")
    assert ready.mono_s - started.mono_s >= 1.0
    assert not [e for e in events if e.type == "Unhealthy" and e.extra["probe"] != "startup"]


def test_startup_probe_failing_failure_threshold_times_kills_and_restarts(deploy_local, stub_spec, stub_command):
    spec = stub_spec(probes={"startup": {"path": "/missing", "periodSeconds": 0.2, "failureThreshold": 3}})
    deployment = deploy_local(spec, command=stub_command)
    killing = deployment.wait_event("Killing", "reference-0", timeout_s=30)
    deployment.wait_event("Started", "reference-0", since=deployment.events().index(killing), timeout_s=30)
    failures = [e for e in deployment.events() if e.type == "Unhealthy" and e.mono_s <= killing.mono_s]
    assert killing.extra["killed_by"] == "startup"
    assert [(e.extra["probe"], e.extra["failures"]) for e in failures][-3:] == [("startup", 1), ("startup", 2), ("startup", 3)]
    assert "HTTP 404" in failures[-1].message
    assert not deployment.replica("reference-0").ready


def test_a_run_longer_than_reset_after_restarts_at_once_again(deploy_local, stub_spec):
    # every run lasts past reset_after_s, so no crash counts as part of a loop: no back-off, ever
    spec = stub_spec(restart={"backoff_base_s": 5, "backoff_cap_s": 10, "reset_after_s": 0.3})
    deployment = deploy_local(spec, command=[sys.executable, "-c", "import time; time.sleep(0.6); raise SystemExit(3)"])
    mark = 0
    for _ in range(3):
        exited = deployment.wait_event("Exited", "reference-0", since=mark, timeout_s=30)
        mark = deployment.events().index(exited) + 1
    assert not [e for e in deployment.events() if e.type == "BackOff"]
    assert deployment.replica("reference-0").restarts >= 2


def test_replicas_are_pinned_to_the_cpus_given(deploy_local, stub_spec, stub_command):
    deployment = deploy_local(stub_spec(), command=stub_command, cpus=[0])
    deployment.wait_ready(timeout_s=30)
    assert psutil.Process(deployment.replica("reference-0").pid).cpu_affinity() == [0]


def test_the_balancer_answers_expect_100_continue_before_the_body(deploy_local, stub_spec, stub_command):
    deployment = deploy_local(stub_spec(), command=stub_command)
    deployment.wait_ready(timeout_s=30)
    address = urlsplit(deployment.endpoint)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"{}")
        assert sock.recv(64).startswith(b"HTTP/1.")  # the stub's own answer to a POST, relayed
