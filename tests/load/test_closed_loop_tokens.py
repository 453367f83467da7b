"""Closed-loop clients speak the OpenAI protocols too (`harness.load.closed_loop.run_closed_loop_protocol`):
a fixed concurrency against a streaming server whose delays are known gives its token figures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from harness.load.closed_loop import run_closed_loop_protocol
from harness.protocolspec import ProtocolSettings
from harness.slo import TokenSlo

from .openai_server import StreamingServer

TTFT_S, ITL_S, TOKENS = 0.03, 0.01, 5


@pytest.fixture
def server():
    with StreamingServer(tokens=TOKENS, ttft_s=TTFT_S, itl_s=ITL_S, cut_every=10) as running:
        yield running


def test_closed_loop_clients_measure_ttft_itl_and_goodput_of_a_stream(server):
    protocol = ProtocolSettings(protocol="openai-chat", model="tiny", max_tokens={"min": 2, "max": 5}, seed=3)
    result = asyncio.run(run_closed_loop_protocol(server.url, protocol, 4, warmup_s=0.2, duration_s=1.0,
                                                  token_slo=TokenSlo(ttft_ms=1000.0)))
    tokens = result["tokens"]
    # 4 clients, each request ~30 ms + up to 4 x 10 ms: far more than 40 requests in a second
    assert result["requests_ok"] > 40 and result["protocol"] == "openai-chat"
    assert result["errors"] == tokens["requests"] - tokens["ok"] > 0  # every 10th stream is cut: a failure
    assert TTFT_S * 1000 <= tokens["ttft_p50_ms"] < TTFT_S * 1000 + 25
    assert ITL_S * 1000 * 0.8 <= tokens["itl_p50_ms"] < ITL_S * 1000 + 15
    assert tokens["good"] == tokens["ok"] and tokens["good_share"] == pytest.approx(tokens["ok"] / tokens["requests"])
    outputs = tokens["output_tokens"] / tokens["ok"]
    assert 2 < outputs < 5  # drawn from 2..5 (the server answers max_tokens of them)


def test_the_closed_loop_process_speaks_a_protocol_given_as_json(server):
    protocol = ProtocolSettings(protocol="openai-completions", max_tokens=3).model_dump_json()
    done = subprocess.run([sys.executable, "-m", "harness.load.closed_loop", "--url", server.url, "--protocol",
                           protocol, "--concurrency", "2", "--warmup-s", "0.1", "--duration-s", "0.5"],
                          capture_output=True, text=True, timeout=30)
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["requests_ok"] > 5 and result["tokens"]["output_tokens_per_s"] > 0


def test_the_rate_generator_and_locust_send_the_same_drawn_sequence(server, tmp_path):
    from harness.load.locust_runner import run_locust
    from harness.load.profiles import LoadProfile
    from harness.load.protocols import build_adapter
    from harness.load.rate import run_rate
    from harness.request_records import REQUESTS_FILE, RequestRecord, read_records

    protocol = ProtocolSettings(protocol="openai-chat", max_tokens={"min": 1, "max": 5}, prompt_words={"min": 2, "max": 9},
                                seed=11)
    asked = [json.loads(build_adapter(protocol).request(n).body)["max_tokens"] for n in range(12)]
    assert len(set(asked)) > 2  # drawn, not fixed

    def answered(out) -> list[int]:  # the server answers max_tokens tokens (5 at most): the n-th request's draw
        records = sorted(read_records(out / REQUESTS_FILE, RequestRecord), key=lambda r: r.intended_s)
        return [r.output_tokens for r in records if r.ok]

    run_rate(server.url, tmp_path / "rate", rate_rps=12, duration_s=1.0, timeout_s=5.0, protocol=protocol)
    run_locust(server.url, LoadProfile(users=1, spawn_rate=10, duration_s=1.0, protocol=protocol), tmp_path / "locust",
               stop_timeout_s=2.0)
    by_rate, by_locust = answered(tmp_path / "rate"), answered(tmp_path / "locust")
    cut = {n for n in range(12) if (n + 1) % 10 == 0}  # every 10th stream of the server is cut: its count differs
    assert [a for n, a in enumerate(asked) if n not in cut][:8] == by_rate[:8]
    assert len(by_locust) >= 4 and by_locust[:4] == asked[:4]  # one user: requests 0, 1, 2, ... in order
