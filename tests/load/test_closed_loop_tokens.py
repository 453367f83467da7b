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
