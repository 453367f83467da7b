"""The scheduler's rules without a model: admission control, chunked prefill, preemption by recompute."""

from __future__ import annotations

import pytest

from harness.llmservice.scheduler import RUNNING, WAITING, QueueFull, Scheduler, Sequence


def _scheduler(**overrides) -> Scheduler:
    settings = {"num_blocks": 4, "block_size": 4, "max_num_seqs": 8, "max_batched_tokens": 64, "max_waiting": 8}
    return Scheduler(**{**settings, **overrides})


def _run(plan) -> None:
    """What the engine does after a step: the planned tokens are cached, a fully cached sequence gets one token."""
    for seq, count in plan.work:
        seq.computed += count
        if seq.pending == 0:
            seq.output.append(65)


def test_a_request_waits_while_the_kv_cache_cannot_hold_it_and_joins_when_blocks_free():
    scheduler = _scheduler()
    first, second = Sequence([1] * 12, 4), Sequence([1] * 8, 4)  # 3 blocks, then 2 of the 4
    scheduler.add(first)
    scheduler.add(second)
    plan = scheduler.schedule()
    assert [seq for seq, _ in plan.work] == [first] and second.state == WAITING and scheduler.pool.free == 1
    scheduler.finish(first)
    plan = scheduler.schedule()
    assert [seq for seq, _ in plan.work] == [second] and second.state == RUNNING and scheduler.pool.free == 2


def test_a_long_prompt_is_prefilled_in_chunks_of_max_batched_tokens():
    scheduler = _scheduler(num_blocks=16, max_batched_tokens=5)
    seq = Sequence([1] * 12, 2)
    scheduler.add(seq)
    counts = []
    for _ in range(3):
        plan = scheduler.schedule()
        counts.append(plan.work[0][1])
        _run(plan)
    assert counts == [5, 5, 2] and seq.output == [65]  # the token is sampled once the whole prompt is cached


def test_sequences_that_outgrow_the_cache_preempt_the_latest_which_is_recomputed():
    scheduler = _scheduler(num_blocks=4, block_size=4)
    old, new = Sequence([1] * 8, 20), Sequence([1] * 8, 20)  # 2 blocks each: the cache is full at once
    scheduler.add(old)
    scheduler.add(new)
    _run(scheduler.schedule())
    assert scheduler.pool.free == 0 and old.output == new.output == [65]
    plan = scheduler.schedule()  # old needs a 3rd block for position 8: new (admitted last) is preempted
    assert plan.preempted == [new] and [s for s, _ in plan.work] == [old] and scheduler.preemptions == 1
    assert new.state == WAITING and new.computed == 0 and new.blocks == [] and new.output == [65]
    assert scheduler.waiting[0] is new and new.pending == 9  # its prompt and its output so far, prefilled again
    _run(plan)
    scheduler.finish(old)
    plan = scheduler.schedule()
    assert [(s, n) for s, n in plan.work] == [(new, 9)] and len(new.blocks) == 3


def test_max_num_seqs_caps_the_running_batch():
    scheduler = _scheduler(num_blocks=64, max_num_seqs=2)
    seqs = [Sequence([1] * 3, 4) for _ in range(3)]
    for seq in seqs:
        scheduler.add(seq)
    plan = scheduler.schedule()
    assert plan.admitted == seqs[:2] and seqs[2].state == WAITING


def test_a_full_waiting_queue_refuses_and_a_finished_sequence_frees_its_blocks():
    scheduler = _scheduler(max_waiting=1)
    scheduler.add(Sequence([1], 1))
    with pytest.raises(QueueFull, match="max_waiting=1"):
        scheduler.add(Sequence([1], 1))
    seq = scheduler.waiting[0]
    scheduler.schedule()
    assert scheduler.pool.free == 3
    scheduler.finish(seq)
    assert scheduler.pool.free == 4 and not scheduler.has_work()
