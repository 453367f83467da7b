"""The open-loop generator across worker processes: shares of one schedule, merged exactly, judged per worker
and overall. (Its throughput against one process is a benchmark's figure, `harness bench loadgen`, not a test's.)"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.load.cpu_sampler import CpuStats, check_saturation
from harness.load.rate import run_rate, schedule_offsets
from harness.load.workers import WorkerLoad, judge_generator, merge_record_files
from harness.measure.percentiles import summarize
from harness.request_records import RequestRecord, read_records, write_records


def _records(rng: random.Random, count: int, start: float) -> list[RequestRecord]:
    records = []
    for _ in range(count):
        intended = start + rng.uniform(0, 10)
        ok = rng.random() > 0.05
        records.append(RequestRecord(intended, intended + rng.uniform(0, 0.002), rng.lognormvariate(2.0, 0.8),
                                     200 if ok else 503, ok, "" if ok else "HTTP 503", "rate"))
    return records


def _fields(r: RequestRecord) -> tuple:
    return r.intended_s, r.sent_s, r.latency_ms, r.status, r.ok, r.error, r.source  # (the token fields are NaN)


def test_merged_percentiles_equal_numpys_over_the_union_of_every_workers_records(tmp_path):
    rng = random.Random(19)
    shares = [_records(rng, n, 1_700_000_000.0) for n in (997, 1003, 1, 512)]
    paths = []
    for index, share in enumerate(shares):
        paths.append(tmp_path / f"w{index}.csv")
        write_records(paths[-1], share, RequestRecord)
    merged, counts = merge_record_files(paths + [tmp_path / "missing.csv"], tmp_path / "requests.csv")
    assert counts == [997, 1003, 1, 512, 0]
    union = [r for share in shares for r in share]
    assert sorted(map(_fields, merged)) == sorted(map(_fields, union))  # every record, unchanged
    assert list(map(_fields, read_records(tmp_path / "requests.csv", RequestRecord))) == list(map(_fields, merged))
    assert [r.intended_s for r in merged] == sorted(r.intended_s for r in union)
    ok = np.array([r.latency_ms for r in union if r.ok])
    summary = summarize(list(read_records(tmp_path / "requests.csv", RequestRecord)))
    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms) == tuple(np.percentile(ok, [50, 95, 99]))
    assert summary.count == len(union) and summary.errors == sum(not r.ok for r in union)


def _cpu(percents: list[float], cores: int = 1) -> CpuStats:
    return check_saturation([(float(t), p) for t, p in enumerate(percents)], cores=cores)


def _worker(index: int, percents: list[float]) -> WorkerLoad:
    cpu = _cpu(percents)
    return WorkerLoad(index, 100 + index, 10, cpu, cpu.saturated, "CPU" if cpu.saturated else "")


def test_saturation_is_judged_per_worker_and_over_the_cores_the_workers_can_use():
    calm = [_worker(0, [50.0] * 10), _worker(1, [55.0] * 10)]
    # two workers at half a core each, pinned to one CPU: together they fill it
    saturated, why = judge_generator(calm, _cpu([105.0] * 10, cores=1), cores=1)
    assert saturated and "the 2 workers together: CPU above 90% of one core" in why
    # the same on two CPUs: half of what they could use
    assert judge_generator(calm, _cpu([105.0] * 10, cores=2), cores=2) == (False, "")
    # one worker pinned at its core saturates the generator whatever the sum says
    hot = [_worker(0, [99.0] * 10), _worker(1, [10.0] * 10)]
    saturated, why = judge_generator(hot, _cpu([109.0] * 10, cores=2), cores=2)
    assert saturated and why == "worker 0: CPU"
    # a merged timeline that lagged is said too
    assert judge_generator(calm, _cpu([105.0] * 10, cores=2), cores=2, schedule_finding="the merged schedule: lag") == (
        True, "the merged schedule: lag")


def test_workers_outside_the_range_are_one_config_error_naming_the_field(tmp_path):
    for bad in (0, 65, 1.5, True):
        with pytest.raises(ConfigError) as info:
            run_rate("http://127.0.0.1:9", tmp_path, rate_rps=10, duration_s=1, workers=bad)
        assert info.value.field == "workers"


@pytest.mark.slow
def test_three_workers_send_the_one_process_schedule_between_them(standin, tmp_path, gen_cpus):
    result = run_rate(standin.url, tmp_path, rate_rps=300, duration_s=1.0, arrival="poisson", seed=5, workers=3,
                      cpus=gen_cpus)
    offsets = schedule_offsets(300, 1.0, "poisson", seed=5)
    assert result.load.requests == len(offsets) == result.lag.scheduled == result.lag.sent
    assert result.load.errors == 0 and result.lag.kept and not result.load.generator_saturated
    # one clock: the merged intended times are the schedule's offsets from one start, to the microsecond
    start = result.records[0].intended_s - offsets[0]
    assert max(abs(r.intended_s - start - o) for r, o in zip(result.records, offsets)) < 1e-4
    # each worker sent its third, from its own process, and every one is judged
    assert [w.requests for w in result.workers] == [len(range(i, len(offsets), 3)) for i in range(3)]
    assert len({w.pid for w in result.workers}) == 3 and not any(w.saturated for w in result.workers)
    assert all(w.cpu.samples > 0 for w in result.workers)  # each process sampled on its own
    assert all((tmp_path / "workers" / str(i) / "requests.csv").exists() for i in range(3))
    data = result.to_dict()
    assert [w["index"] for w in data["workers"]] == [0, 1, 2]
    assert result.load.extra["workers"] == 3 and result.load.extra["schedule_kept"] is True
    assert math.isfinite(result.lag.p99_ms)
