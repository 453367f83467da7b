"""`harness sweep --spec FILE`: the max-rate search of a spec's own deployment; for an LLM its max goodput rate
under TTFT and ITL objectives (a live run through the balancer to a streaming server of known delays)."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.results import load_run

from ..load.openai_server import StreamingServer

TTFT_S, ITL_S = 0.005, 0.002  # fast: a dozen requests a window, so its backlog's slope is not one request's jitter


def _spec(tmp_path, endpoint: str, protocol: str = "{protocol: openai-chat, model: tiny, max_tokens: 4}"):
    # one answer length: a few requests a window, and a latency that varies with it would read as a backlog
    spec = tmp_path / "llm.yaml"
    spec.write_text(f"name: llm\ntarget: {{endpoint: {endpoint}, readiness_path: /health, protocol: {protocol}}}\n"
                    "probes: {readiness: {periodSeconds: 0.2, timeoutSeconds: 1, failureThreshold: 2}}\n", encoding="utf-8")
    return spec


def test_the_goodput_search_of_an_llm_spec_judges_its_probes_by_the_token_slo(tmp_path, capsys):
    with StreamingServer(tokens=5, ttft_s=TTFT_S, itl_s=ITL_S) as server:
        out = tmp_path / "run"
        assert main(["sweep", "--spec", str(_spec(tmp_path, server.url)), "--ttft-ms", "500", "--itl-ms", "200",
                     "--search-budget-s", "6", "--window-s", "0.6", "--warmup-s", "0.1", "--min-windows", "2",
                     "--max-windows", "2", "--point-budget-s", "6", "--out", str(out)]) == 0
    answer = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads((out / "max_rate.json").read_text())
    first = data["search"]["probes"][0]
    assert data["generative"] and data["protocol"] == "openai-chat" and first["verdict"] == "pass", first
    m = first["measurement"]
    assert m["good_share"] == 1.0 and TTFT_S * 1000 <= m["ttft_p99_ms"] < 400 and ITL_S * 1000 * 0.8 <= m["itl_p99_ms"] < 200
    assert data["max_rate_rps"] >= first["rate_rps"] > 0 and data["objectives"]["itl_ms"] == 200.0
    assert answer.startswith("max goodput rate of llm (openai-chat): at least ") and ">= 90% good" in answer
    assert "TTFT <= 500 ms" in answer and "ITL <= 200 ms" in answer
    record = load_run(out)
    assert record.status == "completed" and record.summary["max_rate_rps"] == data["max_rate_rps"]


@pytest.mark.parametrize("flags, first", [
    (["--precisions", "fp32"], "--precisions='fp32': a --spec search measures the spec's deployment as written"),
    (["--min-good-share", "1.5"], "--min-good-share=1.5: must lie in (0, 1]"),
    (["--itl-ms", "0"], "--itl-ms=0.0: a per-request bound must be"),
])
def test_flags_that_do_not_fit_a_spec_search_are_one_line_naming_them(tmp_path, capsys, flags, first):
    assert main(["sweep", "--spec", str(_spec(tmp_path, "http://127.0.0.1:9")), *flags, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and first in err, err


def test_token_objectives_need_an_llm(tmp_path, capsys):
    assert main(["sweep", "--ttft-ms", "100", "--out", str(tmp_path / "r")]) == 2
    assert "--ttft-ms=100.0: token objectives judge an LLM" in capsys.readouterr().err
    oip = _spec(tmp_path, "http://127.0.0.1:9", "{protocol: oip-v2, model: tiny-mlp}")
    assert main(["sweep", "--spec", str(oip), "--itl-ms", "10", "--out", str(tmp_path / "r")]) == 2
    assert "the spec's target speaks oip-v2: token objectives need openai-chat" in capsys.readouterr().err
