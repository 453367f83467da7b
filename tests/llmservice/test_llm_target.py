"""The generative service deployed by the local platform from experiments/targets/llm.yaml, under a short load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_short_load_on_the_llm_spec_measures_ttft_and_itl_from_the_streams(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_WEIGHTS_DIR", str(tmp_path / "weights"))
    code = main(["load", "--spec", str(ROOT / "experiments" / "targets" / "llm.yaml"), "--topology", "single", "--rate-rps", "20",
                 "--duration-s", "1.5", "--warmup-s", "0.5", "--no-pin", "--out", str(tmp_path / "load")])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    printed = json.loads(out.out)
    tokens = printed["tokens"]
    assert printed["errors"] == 0 and tokens["requests"] == tokens["ok"] == 30, tokens
    assert tokens["output_tokens"] == 16 * 30  # max_tokens each, from the usage chunk
    for key in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "tpot_p50_ms", "goodput_rps"):
        assert isinstance(tokens[key], float) and tokens[key] > 0, (key, tokens)
    assert tokens["ttft_p50_ms"] < 500 and tokens["itl_p50_ms"] < 100
    result = json.loads((tmp_path / "load" / "result.json").read_text())
    assert result["replicas"] == 1 and result["prober"]["samples"] > 0 and result["prober"]["failed"] == 0
