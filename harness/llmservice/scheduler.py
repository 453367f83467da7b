"""Iteration-level scheduling over a KV cache of fixed size: admission, chunked prefill, preemption.

Pure Python (no torch), so every rule is tested without a model. One `Scheduler.schedule` call plans
one engine step, as vLLM's scheduler does:

- **Running first.** Each running sequence gets its next piece: a decoding one its last token, one
  still prefilling a chunk of its prompt (the step's tokens are capped at ``max_batched_tokens``:
  chunked prefill, which also bounds the attention memory of a long prompt).
- **Preemption by recompute.** When a running sequence needs a new KV block and none is free, the
  most recently admitted running sequence is preempted: its blocks are freed, its tokens (prompt and
  output so far) go back to the front of the waiting queue, and it is prefilled again when readmitted
  (the client sees a pause in the stream, never an error). ``preemptions`` counts them.
- **Admission control.** Waiting sequences join, first come first served, between steps (continuous
  batching) while there are fewer than ``max_num_seqs`` running, the step has token budget left and
  the free blocks hold the whole of the sequence's tokens; otherwise the head of the queue (and every
  one behind it) waits. Nothing is admitted in a step that preempted.
- **Bounded waiting.** More than ``max_waiting`` waiting sequences: `QueueFull` (the API answers 503).

A block is ``block_size`` tokens; the cache holds ``num_blocks * block_size`` tokens in all.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Sequence", "BlockPool", "Scheduler", "StepPlan", "QueueFull", "WAITING", "RUNNING", "FINISHED"]

WAITING, RUNNING, FINISHED = "waiting", "running", "finished"
_ids = itertools.count(1)


class QueueFull(Exception):
    """The waiting queue is at ``max_waiting``: the request is refused (503), not queued."""


@dataclass(eq=False)
class Sequence:
    """One request's tokens and its place in the cache. ``computed``: tokens whose keys and values are cached."""

    prompt: list[int]
    max_tokens: int
    params: Any = None  # the engine's sampling settings and stream
    output: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    computed: int = 0
    state: str = WAITING
    preemptions: int = 0
    arrived_s: float = field(default_factory=time.monotonic)
    admitted_s: float | None = None
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.output)

    @property
    def pending(self) -> int:
        """Tokens still to run through the model before the next one can be sampled."""
        return self.length - self.computed


class BlockPool:
    """The KV cache's blocks: which are free."""

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self._free = list(range(num_blocks - 1, -1, -1))

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        """Fraction of blocks in use (vLLM's kv_cache_usage_perc: 1.0 is full)."""
        return 1.0 - len(self._free) / self.num_blocks

    def allocate(self, count: int) -> list[int]:
        assert count <= len(self._free), "allocate() past the free blocks"
        taken, self._free = self._free[len(self._free) - count:], self._free[:len(self._free) - count]
        return taken

    def release(self, blocks: list[int]) -> None:
        self._free.extend(blocks)


@dataclass
class StepPlan:
    """One step's work: (sequence, number of its pending tokens to run) and who was preempted for it."""

    work: list[tuple[Sequence, int]]
    preempted: list[Sequence]
    admitted: list[Sequence]


class Scheduler:
    """Plans engine steps over a block pool (see the module docstring)."""

    def __init__(self, num_blocks: int, block_size: int, max_num_seqs: int, max_batched_tokens: int,
                 max_waiting: int) -> None:
        self.pool = BlockPool(num_blocks)
        self.block_size = block_size
        self.max_num_seqs = max_num_seqs
        self.max_batched_tokens = max_batched_tokens
        self.max_waiting = max_waiting
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.preemptions = 0

    @property
    def capacity_tokens(self) -> int:
        return self.pool.num_blocks * self.block_size

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def add(self, seq: Sequence) -> None:
        """Queue ``seq``; raise QueueFull when ``max_waiting`` are already waiting."""
        if len(self.waiting) >= self.max_waiting:
            raise QueueFull(f"{len(self.waiting)} requests already waiting (max_waiting={self.max_waiting})")
        seq.state = WAITING
        self.waiting.append(seq)

    def finish(self, seq: Sequence) -> None:
        """Take ``seq`` out (finished, aborted or failed) and free its blocks."""
        if seq.state == RUNNING:
            self.running.remove(seq)
        elif seq.state == WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        self.pool.release(seq.blocks)
        seq.blocks = []
        seq.state = FINISHED

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.pool.release(seq.blocks)
        seq.blocks, seq.computed, seq.state = [], 0, WAITING
        seq.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(seq)

    def schedule(self) -> StepPlan:
        """Plan the next step (see the module docstring); sequences keep their blocks until `finish`."""
        budget = self.max_batched_tokens
        work: list[tuple[Sequence, int]] = []
        preempted: list[Sequence] = []
        for seq in list(self.running):
            if seq.state != RUNNING or budget <= 0:
                continue
            count = min(seq.pending, budget)
            need = self.blocks_for(seq.computed + count) - len(seq.blocks)
            while need > self.pool.free:
                victim = self.running[-1]
                self._preempt(victim)
                preempted.append(victim)
                if victim is seq:
                    break
            if seq.state != RUNNING:
                continue
            if need > 0:
                seq.blocks += self.pool.allocate(need)
            work.append((seq, count))
            budget -= count
        # a sequence planned above may have been preempted later in the loop (as a victim)
        work = [(seq, count) for seq, count in work if seq.state == RUNNING]
        admitted: list[Sequence] = []
        while self.waiting and not preempted and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            need = self.blocks_for(seq.length)
            if need > self.pool.free:
                break  # admission control: it waits until the cache can hold it (and everyone behind it waits too)
            self.waiting.popleft()
            seq.blocks = self.pool.allocate(need)
            seq.state = RUNNING
            seq.admitted_s = time.monotonic() if seq.admitted_s is None else seq.admitted_s
            self.running.append(seq)
            count = min(seq.pending, budget)
            work.append((seq, count))
            admitted.append(seq)
            budget -= count
        return StepPlan(work, preempted, admitted)
