"""The LLM activities against a real reference generative service (one process, no platform): a long prompt
refused as expected, a burst that preempts, a wedged engine's stall seen and its end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from chaoslib.exceptions import ActivityFailed

from harness.chaos import activities, llm_activities

TOKEN = "llm-token"


@pytest.fixture(scope="module")
def state_file(tmp_path_factory):
    """A state file naming one generative server (a 256-token context, a 512-token KV cache) as the deployment."""
    folder = tmp_path_factory.mktemp("llm-activities")
    argv = [sys.executable, "-m", "harness.llmservice", "--port", "0", "--weights-dir", str(folder / "weights"),
            "--max-model-len", "256", "--kv-cache-tokens", "512", "--max-num-seqs", "16", "--max-batched-tokens", "128"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env={**os.environ, "HARNESS_FAULT_TOKEN": TOKEN})
    try:
        port = None
        for line in server.stdout:
            event = json.loads(line)
            port = event.get("port", port)
            if event["event"] in ("ready", "load_failed", "exit"):
                break
        assert event["event"] == "ready", event
        url = f"http://127.0.0.1:{port}"
        state = {"endpoint": url, "fault_token": TOKEN, "protocol": {"protocol": "openai-chat", "model": "reference-llm"},
                 "replicas": [{"name": "llm-0", "pid": server.pid, "url": url, "ready": True, "state": "Running"}]}
        path = folder / "state.json"
        path.write_text(json.dumps(state))
        yield str(path)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        server.stdout.close()


@pytest.mark.slow
def test_a_prompt_past_the_context_is_refused_as_expected_and_a_wrong_expectation_is_named(state_file):
    result = llm_activities.long_prompt_request(state_file, prompt_chars=1000, expect="refused")
    assert result["status"] == 400 and result["outcome"] == "refused" and "maximum context length" in result["detail"]
    with pytest.raises(ActivityFailed, match=r"expected oom-kill but the request was refused \(HTTP 400\)"):
        llm_activities.long_prompt_request(state_file, prompt_chars=1000, expect="oom-kill")


@pytest.mark.slow
def test_a_burst_past_the_kv_cache_preempts_and_every_stream_completes(state_file):
    result = llm_activities.generation_burst(state_file, requests=12, max_tokens=60, prompt_chars=30, timeout_s=60,
                                             expect_preemptions=True)
    assert result["complete"] == 12 and result["cut"] == result["refused"] == result["failed"] == 0
    assert result["preemptions"] > 0 and result["ttft_p50_ms"] > 0


@pytest.mark.slow
def test_a_wedged_engine_is_seen_stalled_and_generating_again_once_cleared(state_file):
    activities.inject_fault(state_file, "hang", {"duration_s": 30}, replica="first-ready")
    try:
        assert llm_activities.generation_stalls(state_file, replica="llm-0", within_s=0.5)["no_token_within_s"] >= 0.5
    finally:
        assert activities.clear_faults(state_file) == {"llm-0": "cleared"}
    with pytest.raises(ActivityFailed, match="llm-0 is generating"):
        llm_activities.generation_stalls(state_file, replica="llm-0", within_s=5)
