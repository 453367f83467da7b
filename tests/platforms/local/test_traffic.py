"""The balancer's traffic controls: the token bucket (429 with Retry-After), the split between revisions
(smooth weighted round-robin), per-replica answer counts, and the canary analysis read from them."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time

import pytest

from harness.platforms.local.ports import free_port
from harness.platforms.local.ratelimit import TokenBucket
from harness.platforms.local.rollout import RolloutRequest, judge_canary
from harness.platforms.local.routing import LATENCY_BOUNDS_MS, Backend, Router
from harness.service.client import request_json


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_admits_the_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take()
    assert wait == pytest.approx(0.1) and TokenBucket.retry_after_s(wait) == 1
    clock.now = 0.25  # 2.5 tokens back
    assert [bucket.take() == 0.0 for _ in range(3)] == [True, True, False]
    clock.now = 100.0  # never more than the burst
    assert sum(bucket.take() == 0.0 for _ in range(10)) == 3
    assert bucket.stats() == {"rate": 10.0, "burst": 3, "admitted": 8, "refused": 9}


def _router(topology: str = "multi-active") -> Router:
    router = Router(topology)
    router.update([{"name": f"r{i}", "host": "127.0.0.1", "port": 9000 + i, "ready": True, "revision": rev}
                   for i, rev in enumerate((1, 1, 2))])
    return router


def test_a_traffic_split_sends_each_revision_its_share_exactly():
    router = _router()
    router.set_weights({"1": 80, "2": 20})
    picks = [router.pick().revision for _ in range(100)]
    assert picks.count(2) == 20 and picks[:5].count(2) == 1  # every fifth request, not clumped
    router.set_weights({"2": 100})
    assert {router.pick().name for _ in range(10)} == {"r2"}
    router.set_weights({})
    assert {router.pick().name for _ in range(30)} == {"r0", "r1", "r2"}


def test_a_weighted_revision_without_a_ready_replica_passes_its_turn():
    router = _router("active-standby")
    router.set_weights({"1": 50, "2": 50})
    router.update([{"name": "r0", "host": "127.0.0.1", "port": 9000, "ready": True, "revision": 1},
                   {"name": "r1", "host": "127.0.0.1", "port": 9001, "ready": True, "revision": 1},
                   {"name": "r2", "host": "127.0.0.1", "port": 9002, "ready": False, "revision": 2}])
    assert {router.pick().name for _ in range(10)} == {"r0"}  # the primary of revision 1, as the topology says


def _backend_stats(revision: int, ok: int, errors: int, slow: int) -> dict:
    backend = Backend("x", "127.0.0.1", 1, revision=revision)
    for _ in range(ok):
        backend.record(200, 10)
    for _ in range(errors):
        backend.record(503, 5)
    for _ in range(slow):
        backend.record(200, 900)
    return backend.stats()


def test_canary_analysis_counts_failures_and_answers_over_the_latency_bound():
    request = RolloutRequest(strategy="canary", max_failed_share=0.05, max_latency_ms=500, min_requests=20)
    before = [_backend_stats(1, 100, 0, 0), _backend_stats(2, 0, 0, 0)]
    after = [_backend_stats(1, 180, 1, 0), _backend_stats(2, 10, 3, 7)]
    analysis = judge_canary(before, after, stable=1, canary=2, request=request)
    assert (analysis["canary_requests"], analysis["canary_failed"]) == (20, 10)
    assert analysis["canary_failed_share"] == 0.5 and not analysis["passed"]
    assert analysis["stable_requests"] == 81 and analysis["share_of_all_failed_by_canary"] == pytest.approx(10 / 101)
    healthy = judge_canary(before, [_backend_stats(1, 180, 0, 0), _backend_stats(2, 30, 1, 0)], stable=1, canary=2,
                           request=request)
    assert healthy["passed"] and healthy["canary_failed_share"] == pytest.approx(1 / 31)
    too_few = judge_canary(before, [_backend_stats(1, 180, 0, 0), _backend_stats(2, 5, 0, 0)], stable=1, canary=2,
                           request=request)
    assert not too_few["passed"] and not too_few["enough_requests"]
    assert 500 in LATENCY_BOUNDS_MS  # the default SLO is a bucket bound: "over 500 ms" is counted exactly


def _get(port: int) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_the_balancer_answers_429_with_retry_after_beyond_its_token_bucket(tmp_path):
    stub_port = free_port()
    stub = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(stub_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    balancer = subprocess.Popen(
        [sys.executable, "-m", "harness.platforms.local.balancer", "--topology", "single", "--rate-limit-rps", "2",
         "--rate-limit-burst", "3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        port = json.loads(balancer.stdout.readline())["port"]
        balancer.stdin.write((json.dumps({"backends": [{"name": "stub", "host": "127.0.0.1", "port": stub_port,
                                                        "ready": True}]}) + "\n").encode())
        balancer.stdin.flush()
        deadline = time.monotonic() + 20
        while True:  # the stub answers (asked directly: the balancer's bucket stays full)
            try:
                if request_json("GET", f"http://127.0.0.1:{stub_port}/", timeout_s=1)[0] == 200:
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, "the stub did not start"
            time.sleep(0.05)
        time.sleep(0.2)  # the balancer has read its backend
        answers = [_get(port) for _ in range(6)]
        statuses = [status for status, _, _ in answers]
        assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
        _, headers, body = next(answer for answer in answers if answer[0] == 429)
        assert headers["retry-after"] == "1" and headers["content-type"] == "application/json"
        assert json.loads(body) == {"error": "rate limit exceeded: 2 requests/s, burst 3"}
        stats = request_json("GET", f"http://127.0.0.1:{port}/_balancer/stats")[1]
        assert stats["rate_limit"]["refused"] >= 1 and stats["backends"][0]["statuses"]["2xx"] >= 3
    finally:
        for process in (balancer, stub):
            process.terminate()
            process.wait(timeout=10)
        balancer.stdin.close()
        balancer.stdout.close()
