"""The balancer answers as the replica does: the same corpus gets the same statuses both ways; bodies are
streamed (memory flat), the replicas' body limit is enforced by the balancer itself (413, not 502); a replica
stopped with work it cannot finish exits inside the grace period (0, not 137) and answers that work 503."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from harness.bench.fuzz import check_answers, send_corpus
from harness.bench.fuzzcorpus import make_corpus
from harness.config import resolve_service_config
from harness.platforms.local.http1 import HttpError, stream_request_body
from harness.service.client import inject_fault, wait_ready
from harness.service.registry import example_request
from harness.service.server import ServiceThread

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 90.0
TINY = {"service": {"model": "tiny-mlp", "max_queue_delay_ms": 2}}


def _pieces(data: bytes, length: int | None, limit: int) -> list[bytes]:
    async def run() -> list[bytes]:  # the reader belongs to the loop asyncio.run creates
        reader = asyncio.StreamReader(limit=2**16)
        reader.feed_data(data)
        reader.feed_eof()
        return [piece async for piece in stream_request_body(reader, length, limit)]

    return asyncio.run(run())


def test_request_bodies_stream_in_bounded_pieces_and_are_refused_past_the_limit():
    body = bytes(range(256)) * 1024  # 256 KiB
    pieces = _pieces(body, len(body), len(body))
    assert b"".join(pieces) == body and max(map(len, pieces)) <= 64 * 1024
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 100_000]), body[i : i + 100_000]) for i in range(0, len(body), 100_000)) + b"0\r\n\r\n"
    pieces = _pieces(chunked, None, len(body))
    assert b"".join(pieces) == body and max(map(len, pieces)) <= 64 * 1024
    for data, length in ((body, len(body)), (chunked, None)):
        with pytest.raises(HttpError, match=f"exceeds max_body_bytes={len(body) - 1}") as refused:
            _pieces(data, length, len(body) - 1)
        assert refused.value.status == 413


def test_the_same_corpus_gets_the_same_statuses_directly_and_through_the_balancer(deploy_local, make_spec):
    deployment = deploy_local(make_spec(service={**TINY["service"], "max_body_bytes": 256 * 1024}))
    deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
    corpus = make_corpus("tiny-mlp", 400, seed=7, max_body_bytes=256 * 1024)
    direct = send_corpus(deployment.replica("reference-0").url, corpus, concurrency=4)
    through = send_corpus(deployment.endpoint, corpus, concurrency=4)
    assert check_answers(corpus, direct) == [] and check_answers(corpus, through) == []
    mismatches = [(r.form, r.kind, d.status, b.status) for r, d, b in zip(corpus, direct, through) if d.status != b.status]
    assert mismatches == []
    statuses = {answer.status for answer in direct}
    assert {200, 400, 413} <= statuses  # the corpus did reach past the limit, and the model
    assert deployment.balancer_stats()["too_large"] >= 1  # refused by the balancer itself, not forwarded


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A weights cache for the in-process replicas of this module."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture
def balancer_before(tmp_path):
    """Return a function starting a balancer process in front of a given port; all are stopped afterwards."""
    started: list[subprocess.Popen] = []

    def start(port: int, max_body_bytes: int) -> tuple[str, psutil.Process]:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness.platforms.local.balancer", "--topology", "single", "--max-body-bytes", str(max_body_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        started.append(process)
        balancer_port = json.loads(process.stdout.readline())["port"]
        process.stdin.write((json.dumps({"backends": [{"name": "r0", "host": "127.0.0.1", "port": port, "ready": True}]}) + "\n").encode())
        process.stdin.flush()
        url = f"http://127.0.0.1:{balancer_port}"
        deadline = time.monotonic() + 10
        while httpx.get(url + "/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the balancer never routed to the replica"
            time.sleep(0.05)
        return url, psutil.Process(process.pid)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)
        process.stdin.close()
        process.stdout.close()


def test_balancer_memory_stays_flat_while_large_bodies_stream_through(weights_dir, balancer_before):
    limit = 128 * 2**20
    config = resolve_service_config({"model": "tiny-mlp", "port": 0, "weights_dir": str(weights_dir), "torch_threads": 1,
                                     "max_body_bytes": limit}, env={})
    with ServiceThread(config) as replica:
        wait_ready(replica.base_url, timeout_s=60)
        url, balancer = balancer_before(replica.port, limit)
        before_mb = balancer.memory_info().rss / 2**20
        body = b"[" + b" " * (48 * 2**20) + b"]"  # 48 MiB, well under the limit: forwarded, then refused by the replica (400)
        assert httpx.post(url + "/v2/models/tiny-mlp/infer", content=body, timeout=60).status_code == 400
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            statuses = list(pool.map(lambda _: httpx.post(url + "/v2/models/tiny-mlp/infer", content=body, timeout=120).status_code, range(3)))
        after_mb = balancer.memory_info().rss / 2**20
    assert statuses == [400] * 3
    assert after_mb - before_mb < 16, f"balancer RSS {before_mb:.1f} -> {after_mb:.1f} MiB after 4 x 48 MiB bodies"


def test_a_body_over_the_replicas_limit_gets_the_same_413_from_the_balancer(weights_dir, balancer_before):
    config = resolve_service_config({"model": "tiny-mlp", "port": 0, "weights_dir": str(weights_dir), "torch_threads": 1}, env={})
    with ServiceThread(config) as replica:
        wait_ready(replica.base_url, timeout_s=60)
        url, _ = balancer_before(replica.port, config.max_body_bytes)
        valid = json.dumps(example_request("tiny-mlp", 1)).encode()
        at_limit = valid[:-1] + b" " * (config.max_body_bytes - len(valid)) + b"}"
        over = at_limit + b" "
        for base in (replica.base_url, url):
            assert httpx.post(base + "/v2/models/tiny-mlp/infer", content=at_limit, timeout=30).status_code == 200
            refused = httpx.post(base + "/v2/models/tiny-mlp/infer", content=over, timeout=30)
            assert refused.status_code == 413 and f"max_body_bytes={config.max_body_bytes}" in refused.json()["error"]
            chunked = httpx.post(base + "/v2/models/tiny-mlp/infer", content=(over[i : i + 2**20] for i in range(0, len(over), 2**20)), timeout=30)
            assert chunked.status_code == 413 and "max_body_bytes" in chunked.json()["error"]


def test_a_replica_stopped_with_work_it_cannot_finish_exits_0_inside_the_grace_period(deploy_local, make_spec):
    deployment = deploy_local(make_spec(**TINY, terminationGracePeriodSeconds=2))
    deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
    replica = deployment.replica("reference-0")
    inject_fault(replica.url, "slow-inference", deployment.fault_token, {"delay_ms": 30000, "duration_s": 60})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        stuck = [pool.submit(httpx.post, deployment.endpoint + "/v2/models/tiny-mlp/infer", json=example_request("tiny-mlp", 1),
                             timeout=60) for _ in range(2)]
        deadline = time.monotonic() + 20
        while 'harness_in_flight_requests{model="tiny-mlp"} 2' not in httpx.get(replica.url + "/metrics").text:
            assert time.monotonic() < deadline, "the requests never got in flight"
            time.sleep(0.02)
        mark = deployment.event_count()
        deployment.close()  # SIGTERM each replica, SIGKILL at the end of terminationGracePeriodSeconds
        answers = [future.result() for future in stuck]
    exited = [e for e in deployment.events()[mark:] if e.type == "Exited" and e.replica == "reference-0"]
    assert exited and exited[0].exit_code == 0, exited  # 137 would mean the platform had to kill it
    for answer in answers:
        assert answer.status_code == 503 and "grace period" in answer.json()["error"]
