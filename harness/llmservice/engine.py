"""The engine loop: one task on the server's event loop that steps the model over every running sequence.

Each iteration plans a step (`harness.llmservice.scheduler`), runs it (decoding sequences batched in
one forward pass, each prefill chunk in its own), samples one token for every sequence whose pending
tokens are all cached, and hands the tokens to the requests' streams. New requests join between two
steps (continuous batching): the step runs synchronously on the loop, then the loop serves HTTP
before the next one, so a health check is answered within one step's time.

Faults (the harness's hooks, `harness.service.faults.FaultManager`) act here as an LLM server's
failures do: ``hang`` stalls generation (no step runs; streams stop mid-answer) while HTTP, health
and readiness go on answering; ``slow-inference`` stretches every step (``factor``) or adds to it
(``delay_ms``). A failed step fails the requests in it (500) and the engine goes on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.llmservice.scheduler import FINISHED, QueueFull, Scheduler, Sequence
from harness.llmservice.tokenizer import OUTPUT_IDS

__all__ = ["EngineSettings", "Sampling", "Token", "LLMEngine", "QueueFull", "Draining"]

_LOW, _HIGH = OUTPUT_IDS[0], OUTPUT_IDS[-1] + 1
_HANG_POLL_S = 0.05
_YIELDS = 3


class Draining(Exception):
    """The server is shutting down: no new request is taken (503)."""


@dataclass(frozen=True)
class EngineSettings:
    """The serving mechanics' sizes (``python -m harness.llmservice --help`` says what each means)."""

    max_model_len: int = 2048
    kv_cache_tokens: int = 8192
    block_size: int = 16
    max_num_seqs: int = 64
    max_batched_tokens: int = 512
    max_waiting: int = 1024

    def check(self) -> list[str]:
        """Return what is wrong with these sizes, one line per field (empty: fine)."""
        problems = []
        for name in ("max_model_len", "kv_cache_tokens", "block_size", "max_num_seqs", "max_batched_tokens", "max_waiting"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)}: must be at least 1")
        if not problems and self.kv_cache_tokens < self.max_model_len:
            problems.append(f"kv_cache_tokens={self.kv_cache_tokens}: below max_model_len={self.max_model_len}, so a "
                            f"request of the maximum length could never be admitted (raise it or lower max_model_len)")
        return problems


@dataclass
class Sampling:
    """One request's sampling settings and the stream its tokens go to."""

    temperature: float
    top_p: float
    rng: np.random.Generator
    stop: tuple[str, ...] = ()
    text: str = ""
    first_token_s: float | None = None
    last_token_s: float | None = None
    gone: bool = False  # the client went away
    _buffer: list = field(default_factory=list)
    _waiter: asyncio.Future | None = None

    def deliver(self, token: "Token") -> None:
        """Hand ``token`` to the stream (the engine's side); the waiting handler resumes in the loop's next turn."""
        self._buffer.append(token)
        self._wake()

    def hang_up(self) -> None:
        """Mark the client gone (its connection closed) and wake the handler."""
        self.gone = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> "Token | None":
        """Return the next token (the handler's side), or None once the client is gone."""
        while not self._buffer and not self.gone:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return None if self.gone else self._buffer.pop(0)


@dataclass(frozen=True)
class Token:
    """What a stream receives: a piece of text, and why the answer ended (None while it goes on)."""

    text: str
    finish_reason: str | None = None
    error: str | None = None


class LLMEngine:
    """The model, its KV cache and the scheduler, stepped by `run` (see the module docstring)."""

    def __init__(self, model: Any, settings: EngineSettings, metrics: Any, faults: Any) -> None:
        import torch

        self.torch = torch
        self.model, self.settings, self.metrics, self.faults = model, settings, metrics, faults
        num_blocks = -(-settings.kv_cache_tokens // settings.block_size)
        self.cache = model.new_cache(num_blocks, settings.block_size)
        self.scheduler = Scheduler(num_blocks, settings.block_size, settings.max_num_seqs, settings.max_batched_tokens,
                                   settings.max_waiting)
        self.draining = False
        self.steps = 0
        self._wake = asyncio.Event()
        self._closing = False

    def submit(self, prompt: list[int], max_tokens: int, sampling: Sampling) -> Sequence:
        """Queue a request; return its sequence. Raises Draining, or QueueFull when the waiting queue is full."""
        if self.draining:
            raise Draining("server draining: not taking new requests")
        seq = Sequence(prompt, max_tokens, sampling)
        self.scheduler.add(seq)
        self.metrics.prompt_tokens += len(prompt)
        self._wake.set()
        return seq

    def abort(self, seq: Sequence) -> None:
        """Drop a request (its client went away): its blocks are freed at once."""
        if seq.state != FINISHED:
            self.scheduler.finish(seq)
            self.metrics.finished["abort"] += 1

    def warm_up(self, prompt: list[int]) -> float:
        """Run the shapes serving will run before taking traffic: a full prefill chunk, then a full decode batch
        (the allocator settles, so memory does not climb under the first load); nothing is kept or counted.
        Returns the seconds taken."""
        started = time.perf_counter()
        real, self.metrics = self.metrics, type(self.metrics)(self.metrics.model)
        settings = self.settings
        count = max(1, min(settings.max_num_seqs, self.scheduler.pool.num_blocks // 2))
        room = self.scheduler.capacity_tokens // count - 2 * settings.block_size
        length = max(len(prompt), min(settings.max_batched_tokens, settings.max_model_len - 2, room))
        long_prompt = (prompt * (length // len(prompt) + 1))[:length]
        for n in range(count):
            seq = Sequence(long_prompt if n == 0 else prompt, 2, Sampling(0.0, 1.0, np.random.default_rng(n)))
            self.scheduler.waiting.append(seq)  # past max_waiting: the warm-up is no request
        while self.scheduler.has_work():
            self.step()
        self.scheduler.preemptions = 0
        self.metrics = real
        return time.perf_counter() - started

    def idle(self) -> bool:
        return not self.scheduler.has_work()

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """Step until `close`; never raises (a failed step fails its requests)."""
        while not self._closing:
            if not self.scheduler.has_work():
                self._wake.clear()
                await self._wake.wait()
                continue
            if await self._stalled():
                continue
            started = time.perf_counter()
            try:
                self.step()
            except Exception as exc:  # a bug or an exhausted allocator: the requests of this step fail, not the server
                self._fail_running(f"generation failed: {type(exc).__name__}: {exc}")
            elapsed = time.perf_counter() - started
            extra = self._slowdown_s(elapsed)
            if extra > 0:
                await asyncio.sleep(extra)
            for _ in range(_YIELDS):  # turns of the loop for HTTP between steps: a new connection takes a few
                await asyncio.sleep(0)

    async def _stalled(self) -> bool:
        """Wait out a hang fault (generation stalls; the loop keeps serving HTTP); return True if there was one."""
        if not self.faults.counts().get("hang"):
            return False
        await asyncio.sleep(_HANG_POLL_S)
        return True

    def _slowdown_s(self, step_s: float) -> float:
        factor, delay_s = self.faults.inference_factor(), self.faults.inference_delay_s()
        return max(0.0, (factor - 1.0) * step_s) + delay_s

    def _fail_running(self, why: str) -> None:
        for seq in list(self.scheduler.running):
            self.scheduler.finish(seq)
            seq.params.deliver(Token("", None, why))
            self.metrics.finished["error"] += 1

    def step(self) -> int:
        """Plan and run one step; return how many tokens went through the model."""
        plan = self.scheduler.schedule()
        if not plan.work:
            return 0
        now = time.monotonic()
        for seq in plan.admitted:
            if seq.preemptions == 0:
                self.metrics.queue_time.observe(now - seq.arrived_s)
        self.metrics.preemptions = self.scheduler.preemptions
        decodes = [(seq, count) for seq, count in plan.work if count == 1]
        groups = [decodes] if decodes else []
        groups += [[(seq, count)] for seq, count in plan.work if count > 1]
        tokens = 0
        for group in groups:
            logits = self._forward(group)
            tokens += sum(count for _, count in group)
            ready = []
            for row, (seq, count) in enumerate(group):
                seq.computed += count
                if seq.pending == 0:
                    ready.append((row, seq))
            if ready:
                self._sample(logits, ready)
        self.steps += 1
        self.metrics.iteration_tokens.observe(tokens)
        return tokens

    def _forward(self, group: list[tuple[Sequence, int]]) -> np.ndarray:
        torch = self.torch
        width = max(count for _, count in group)
        table_width = max(len(seq.blocks) for seq, _ in group)
        tokens = np.zeros((len(group), width), dtype=np.int64)
        positions = np.zeros((len(group), width), dtype=np.int64)
        tables = np.zeros((len(group), table_width), dtype=np.int64)
        counts = np.zeros(len(group), dtype=np.int64)
        for row, (seq, count) in enumerate(group):
            pieces = seq.tokens[seq.computed:seq.computed + count]
            tokens[row, :count] = pieces
            positions[row] = np.minimum(np.arange(seq.computed, seq.computed + width), seq.computed + count - 1)
            tables[row, :len(seq.blocks)] = seq.blocks
            counts[row] = count
        logits = self.model(torch.from_numpy(tokens), torch.from_numpy(positions), torch.from_numpy(counts),
                            torch.from_numpy(tables), self.cache)
        return logits[:, _LOW:_HIGH].numpy()

    def _sample(self, logits: np.ndarray, ready: list[tuple[int, Sequence]]) -> None:
        now = time.monotonic()
        for row, seq in ready:
            sampling: Sampling = seq.params
            token = _LOW + _pick(logits[row], sampling)
            seq.output.append(token)
            text = chr(token)
            sampling.text += text
            if sampling.first_token_s is None:
                sampling.first_token_s = now
                self.metrics.ttft.observe(now - seq.arrived_s)
            elif sampling.last_token_s is not None:
                self.metrics.itl.observe(now - sampling.last_token_s)
            sampling.last_token_s = now
            self.metrics.generation_tokens += 1
            reason = None
            if any(sampling.text.endswith(stop) for stop in sampling.stop):
                reason = "stop"
            elif len(seq.output) >= seq.max_tokens or seq.length >= self.settings.max_model_len:
                reason = "length"
            if reason is not None:
                self.scheduler.finish(seq)
                self.metrics.observe_finished(reason, now - seq.arrived_s, len(seq.output),
                                              now - sampling.first_token_s)
            sampling.deliver(Token(text, reason))


def _pick(logits: np.ndarray, sampling: Sampling) -> int:
    """Return the index of the token drawn from ``logits`` (greedy at temperature 0; nucleus below top_p 1)."""
    if sampling.temperature <= 0.0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / sampling.temperature
    probs = np.exp(scaled.astype(np.float64))
    if sampling.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        kept = np.cumsum(probs[order]) <= sampling.top_p * probs.sum()
        kept[0] = True
        mask = np.zeros_like(probs)
        mask[order[kept]] = 1.0
        probs = probs * mask
    cumulative = np.cumsum(probs)
    return int(min(np.searchsorted(cumulative, sampling.rng.random() * cumulative[-1], side="right"), len(probs) - 1))
