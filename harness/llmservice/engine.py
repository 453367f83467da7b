"""The engine loop: one thread that steps the model over every running sequence, beside the server's event loop.

Each iteration plans a step (`harness.llmservice.scheduler`), runs it (decoding sequences batched in
one forward pass, each prefill chunk in its own), samples one token for every sequence whose pending
tokens are all cached, and hands the step's tokens to the requests' streams on the event loop in one
call. New requests join between two steps (continuous batching). The event loop only parses, queues
and writes, as vLLM's API server beside its engine core, so health checks and metrics are answered
whatever a step costs; what waits for the engine is what asks it for tokens (a request,
``/health/generate``). One lock guards the scheduler; it is not held during the forward pass.
(Measured on one pinned core against the same engine stepped on the event loop between HTTP turns:
at 60 streamed requests/s of 16 tokens, TTFT p50 3-4 ms against 200-435 ms, ITL p50 0.9 ms against
32-34 ms, the worst /health 5-8 ms against 77-88 ms.)

Faults (the harness's hooks, `harness.service.faults.FaultManager`) act here as an LLM server's
failures do: ``hang`` stalls generation (no step runs; streams stop mid-answer) while HTTP, health
and readiness go on answering; ``slow-inference`` stretches every step (``factor``) or adds to it
(``delay_ms``). A failed step fails the requests in it (500) and the engine goes on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.llmservice.scheduler import FINISHED, QueueFull, Scheduler, Sequence
from harness.llmservice.tokenizer import OUTPUT_IDS

__all__ = ["EngineSettings", "Sampling", "Token", "LLMEngine", "QueueFull", "Draining"]

_LOW, _HIGH = OUTPUT_IDS[0], OUTPUT_IDS[-1] + 1
_HANG_POLL_S = 0.05


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
        # one block more than the pool hands out: the scratch block, where padding (and a row aborted while its step
        # was prepared) writes, so no step ever writes into a block another sequence owns
        self.cache = model.new_cache(num_blocks + 1, settings.block_size)
        self._scratch = num_blocks
        self.scheduler = Scheduler(num_blocks, settings.block_size, settings.max_num_seqs, settings.max_batched_tokens,
                                   settings.max_waiting)
        self.draining = False
        self.steps = 0
        self._closing = False
        self._lock = threading.Lock()  # the scheduler's: the engine thread and the event loop both change it
        self._loop: asyncio.AbstractEventLoop | None = None  # where the streams are served (None: deliver in place)
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def submit(self, prompt: list[int], max_tokens: int, sampling: Sampling) -> Sequence:
        """Queue a request; return its sequence. Raises Draining, or QueueFull when the waiting queue is full."""
        if self.draining:
            raise Draining("server draining: not taking new requests")
        seq = Sequence(prompt, max_tokens, sampling)
        with self._lock:
            self.scheduler.add(seq)
        self.metrics.prompt_tokens += len(prompt)
        self._wake.set()
        return seq

    def abort(self, seq: Sequence) -> None:
        """Drop a request (its client went away): its blocks are freed at once."""
        with self._lock:
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
        """Stop stepping (an engine thread after its current step)."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start stepping in the engine thread; tokens go to the streams on ``loop`` (one call a step)."""
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Step until `close`; never raises (a failed step fails its requests, not the server)."""
        while not self._closing:
            if not self.scheduler.has_work():
                self._wake.wait(0.1)
                self._wake.clear()
                continue
            if self.faults.counts().get("hang"):  # a wedged engine: no step, streams stall, HTTP goes on
                time.sleep(_HANG_POLL_S)
                continue
            started = time.perf_counter()
            try:
                self.step()
            except Exception as exc:  # a bug or an exhausted allocator
                self._fail_running(f"generation failed: {type(exc).__name__}: {exc}")
            extra = self._slowdown_s(time.perf_counter() - started)
            if extra > 0:
                time.sleep(extra)

    def _slowdown_s(self, step_s: float) -> float:
        factor, delay_s = self.faults.inference_factor(), self.faults.inference_delay_s()
        return max(0.0, (factor - 1.0) * step_s) + delay_s

    def _fail_running(self, why: str) -> None:
        with self._lock:
            failed = list(self.scheduler.running)
            for seq in failed:
                self.scheduler.finish(seq)
                self.metrics.finished["error"] += 1
        self._dispatch([(seq.params, Token("", None, why)) for seq in failed])

    def _dispatch(self, tokens: list[tuple[Sampling, Token]]) -> None:
        """Hand a step's tokens to their streams on the event loop, in one call (in place when there is no loop:
        `step` called directly, as the warm-up and the tests do)."""
        if self._loop is None:
            _deliver_all(tokens)
        elif tokens:
            self._loop.call_soon_threadsafe(_deliver_all, tokens)

    def step(self) -> int:
        """Plan and run one step; return how many tokens went through the model."""
        with self._lock:
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
        out: list[tuple[Sampling, Token]] = []
        for group in groups:
            logits = self._forward(group)
            tokens += sum(count for _, count in group)
            with self._lock:
                ready = []
                for row, (seq, count) in enumerate(group):
                    if seq.state == FINISHED:  # aborted while it ran
                        continue
                    seq.computed += count
                    if seq.pending == 0:
                        ready.append((row, seq))
                if ready:
                    out += self._sample(logits, ready)
        self._dispatch(out)
        self.steps += 1
        self.metrics.iteration_tokens.observe(tokens)
        return tokens

    def _forward(self, group: list[tuple[Sequence, int]]) -> np.ndarray:
        torch = self.torch
        width = max(count for _, count in group)
        with self._lock:  # the inputs as the scheduler has them now; an abort after this frees blocks no one reuses yet
            live = [seq.state != FINISHED for seq, _ in group]
            table_width = max([len(seq.blocks) for (seq, _), on in zip(group, live) if on] + [1])
            tokens = np.zeros((len(group), width), dtype=np.int64)
            positions = np.zeros((len(group), width), dtype=np.int64)
            tables = np.full((len(group), table_width), self._scratch, dtype=np.int64)
            counts = np.ones(len(group), dtype=np.int64)  # an aborted row: one token at 0, into the scratch block
            for row, (seq, count) in enumerate(group):
                if not live[row]:
                    continue
                tokens[row, :count] = seq.tokens[seq.computed:seq.computed + count]
                positions[row] = np.minimum(np.arange(seq.computed, seq.computed + width), seq.computed + count - 1)
                tables[row, :len(seq.blocks)] = seq.blocks
                counts[row] = count
        logits = self.model(torch.from_numpy(tokens), torch.from_numpy(positions), torch.from_numpy(counts),
                            torch.from_numpy(tables), self.cache)
        return logits[:, _LOW:_HIGH].numpy()

    def _sample(self, logits: np.ndarray, ready: list[tuple[int, Sequence]]) -> list[tuple[Sampling, Token]]:
        now = time.monotonic()
        out = []
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
            out.append((sampling, Token(text, reason)))
        return out


def _deliver_all(tokens: list[tuple[Sampling, Token]]) -> None:
    for sampling, token in tokens:
        sampling.deliver(token)


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
