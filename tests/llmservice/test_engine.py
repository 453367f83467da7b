"""The engine with the real decoder: continuous batching, preemption under a small KV cache, determinism, metrics."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from harness.llmservice.engine import EngineSettings, LLMEngine, Sampling
from harness.llmservice.metrics import LLMMetrics
from harness.llmservice.tokenizer import encode
from harness.service.faults import FaultManager


def _engine(decoder, **settings) -> LLMEngine:
    return LLMEngine(decoder, EngineSettings(**settings), LLMMetrics("reference-llm"), FaultManager())


def _sampling(seed: int = 1, temperature: float = 1.0) -> Sampling:
    return Sampling(temperature, 1.0, np.random.default_rng(seed))


def _drain(engine: LLMEngine, steps: int = 10_000) -> None:
    for _ in range(steps):
        if engine.idle():
            return
        engine.step()
    raise AssertionError("the engine did not finish its work")


def _text(engine: LLMEngine, prompt: str, max_tokens: int, seed: int) -> str:
    async def go() -> str:
        sampling = _sampling(seed)
        engine.submit(encode(prompt), max_tokens, sampling)
        _drain(engine)
        return sampling.text

    return asyncio.run(go())


def test_a_new_request_joins_the_running_batch_between_decode_steps(decoder):
    async def go():
        engine = _engine(decoder)
        first, second = _sampling(), _sampling()
        a = engine.submit(encode("first"), 12, first)
        for _ in range(3):
            engine.step()
        assert len(a.output) == 3 and a.state == "running"
        b = engine.submit(encode("second"), 4, second)
        engine.step()  # the next step prefills the newcomer and decodes the first together
        assert len(a.output) == 4 and len(b.output) == 1 and b.computed == len(b.prompt)
        engine.step()  # then both decode in one batch
        assert len(a.output) == 5 and len(b.output) == 2 and len(engine.scheduler.running) == 2
        _drain(engine)
        assert len(first.text) == 12 and len(second.text) == 4

    asyncio.run(go())


def test_a_kv_cache_too_small_for_every_sequence_preempts_and_recomputes_yet_every_answer_completes(decoder):
    async def go():
        engine = _engine(decoder, max_model_len=96, kv_cache_tokens=96, block_size=16)
        streams = [_sampling(seed) for seed in range(4)]
        for n, sampling in enumerate(streams):
            engine.submit(encode(f"prompt {n}"), 60, sampling)  # 4 x ~70 tokens into a 96-token cache
        _drain(engine)
        assert engine.scheduler.preemptions > 0 and engine.metrics.preemptions == engine.scheduler.preemptions
        assert [len(s.text) for s in streams] == [60] * 4
        assert engine.scheduler.pool.free == engine.scheduler.pool.num_blocks  # every block back

    asyncio.run(go())


def test_the_same_seed_gives_the_same_text_and_another_seed_another(decoder):
    engine = _engine(decoder)
    once, again, other = (_text(engine, "determinism", 24, seed) for seed in (7, 7, 8))
    assert once == again and once != other and len(once) == 24 and once.isprintable()


def test_greedy_decoding_is_the_same_with_and_without_preemption(decoder):
    async def run(kv_tokens: int) -> list[str]:
        engine = _engine(decoder, max_model_len=80, kv_cache_tokens=kv_tokens, block_size=16)
        streams = [_sampling(temperature=0.0) for _ in range(3)]
        for n, sampling in enumerate(streams):
            engine.submit(encode(f"greedy {n}"), 64, sampling)
        _drain(engine)
        return [s.text for s in streams], engine.scheduler.preemptions

    roomy, tight = asyncio.run(run(4096)), asyncio.run(run(96))
    assert roomy[1] == 0 and tight[1] > 0
    assert tight[0] == roomy[0]


def test_the_engine_records_vllm_named_metrics(decoder):
    engine = _engine(decoder)
    _text(engine, "metrics", 5, 3)
    text = engine.metrics.render(0, 0, 0.0, {"max_model_len": 2048, "kv_cache_tokens": 8192}, lambda: {}).decode()
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:num_preemptions_total", "vllm:time_to_first_token_seconds_count", "vllm:inter_token_latency_seconds_count",
                 "vllm:e2e_request_latency_seconds_count", 'vllm:request_success_total{model_name="reference-llm",finished_reason="length"} 1',
                 'vllm:generation_tokens_total{model_name="reference-llm"} 5'):
        assert name in text, name
    assert 'vllm:inter_token_latency_seconds_count{model_name="reference-llm"} 4' in text


@pytest.mark.parametrize("settings, field", [({"kv_cache_tokens": 100, "max_model_len": 200}, "kv_cache_tokens=100"),
                                             ({"block_size": 0}, "block_size=0")])
def test_impossible_sizes_are_named(settings, field):
    problems = EngineSettings(**settings).check()
    assert problems and problems[0].startswith(field)


def test_a_request_aborted_between_the_plan_and_the_forward_pass_harms_no_other(decoder):
    async def go(abort_mid_step: bool) -> str:
        engine = _engine(decoder, block_size=4)
        a, b = _sampling(temperature=0.0), _sampling(temperature=0.0)
        engine.submit(encode("keep me"), 20, a)
        other = engine.submit(encode("drop me"), 20, b)
        for _ in range(3):
            engine.step()
        plan = engine.scheduler.schedule

        def plan_then_abort():  # as the event loop's abort lands while the engine thread prepares the step
            planned = plan()
            engine.scheduler.finish(other)
            return planned

        if abort_mid_step:
            engine.scheduler.schedule = plan_then_abort
            engine.step()
            engine.scheduler.schedule = plan
        else:
            engine.abort(other)
        _drain(engine)
        assert engine.scheduler.pool.free == engine.scheduler.pool.num_blocks
        return a.text

    assert asyncio.run(go(True)) == asyncio.run(go(False)) and len(asyncio.run(go(True))) == 20
