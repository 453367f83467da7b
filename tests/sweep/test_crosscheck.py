"""Capacity's one-replica search cross-checked against the sweep's figure for the same configuration."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import pytest

import harness.sweep.local
from harness.sweep.crosscheck import AGREE_TOLERANCE, agree, gap, read_sweep_reference, sweep_reference
from harness.sweep.grid import SUMMARY_JSON, WindowMeasurement
from harness.sweep.planner import CapacitySettings, measure_capacity
from harness.sweep.points import Precheck
from harness.sweep.simulated import SimulatedService

SLO_MS = 500.0
TRUE_RPS = 600.0  # the simulated replica's capacity; its knee under the SLO is sim.knee_rps(SLO_MS)


def test_agreement_is_the_larger_at_most_15_percent_above_the_smaller():
    assert AGREE_TOLERANCE == 0.15
    assert agree(100.0, 115.0) and agree(115.0, 100.0)
    assert not agree(100.0, 115.5) and not agree(300.4, 453.6)
    assert gap(374.0, 390.8) == pytest.approx(390.8 / 374.0 - 1)
    assert math.isinf(gap(0.0, 100.0)) and not agree(0.0, 100.0)


def _summary(p99_ms: float = SLO_MS, rate: float | None = 453.6) -> dict:
    search = {"max_rate_rps": rate, "upper_rps": 476.3, "converged": True}
    return {"slo": {"p99_ms": p99_ms, "max_error_rate": 0.01}, "searches": {"fp32/32": search, "bf16/32": search}}


def test_the_reference_is_the_sweeps_search_for_the_same_configuration_and_slo(tmp_path, monkeypatch):
    ref = sweep_reference(_summary(), "fp32", 32, SLO_MS)
    assert ref.rate_rps == 453.6 and ref.upper_rps == 476.3 and ref.converged and "fp32 batch-32" in ref.source
    assert sweep_reference(_summary(), "fp32", 1, SLO_MS) is None  # not searched
    assert sweep_reference(_summary(p99_ms=200.0), "fp32", 32, SLO_MS) is None  # another SLO: not comparable
    assert sweep_reference(_summary(rate=0.0), "fp32", 32, SLO_MS) is None  # no rate passed: nothing to check with
    assert sweep_reference(None, "fp32", 32, SLO_MS) is None
    # read from a job's sweep directory, given as a relative path as the job's --out may be
    settings = CapacitySettings(target_rps=1000.0, p99_ms=SLO_MS)
    assert read_sweep_reference(tmp_path / "missing", settings) is None
    sweep_dir = tmp_path / "job" / "sweep"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / SUMMARY_JSON).write_text(json.dumps(_summary()))
    (tmp_path / "job" / "broken").mkdir()
    (tmp_path / "job" / "broken" / SUMMARY_JSON).write_text("{not json")
    monkeypatch.chdir(tmp_path)
    assert read_sweep_reference("job/sweep", settings).rate_rps == 453.6
    assert read_sweep_reference("job/broken", settings) is None


class _Session:
    """One replica seen at 60% of its capacity while a host transient lasts (the whole first search)."""

    def __init__(self, backend: "_Backend") -> None:
        self.backend = backend

    def precheck(self, timeout_s: float) -> Precheck:
        return Precheck(TRUE_RPS, "simulated")

    def measure(self, level, *, warmup_s, window_s, count, timeout_s, mode="rate"):
        windows = []
        for _ in range(count):
            sim = self.backend.slow if _Backend.transient else self.backend.sim
            m = sim.measure(level)
            windows.append(WindowMeasurement(
                throughput_rps=m.throughput_rps, p50_ms=m.p50_ms, p95_ms=m.p95_ms, p99_ms=m.p99_ms,
                error_rate=m.error_rate, requests=int(level * window_s), sent_rate_rps=m.sent_rate_rps,
                cpu_percent=90.0, rss_mb=500.0))
        return windows


class _Backend:
    direct = True
    transient = False

    def __init__(self, plan, workdir, *, replicas, cpus) -> None:
        self.sim = SimulatedService(TRUE_RPS, base_ms=15.0, noise=0.0)
        self.slow = SimulatedService(TRUE_RPS * 0.6, base_ms=15.0, noise=0.0)

    @contextmanager
    def open(self, precision, max_batch_size, *, ready_timeout_s):
        yield _Session(self)


def _capacity(tmp_path, monkeypatch, *, reference_rps: float, transient: bool) -> dict:
    monkeypatch.setattr(harness.sweep.local, "LocalSweepBackend", _Backend)
    monkeypatch.setattr(_Backend, "transient", transient)
    ref = sweep_reference(_summary(rate=reference_rps), "fp32", 32, SLO_MS)
    settings = CapacitySettings(target_rps=300.0, p99_ms=SLO_MS, max_replicas=1, search_budget_s=600.0)
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if "searching again" in line:  # the transient is over when the second search starts
            _Backend.transient = False

    data = measure_capacity(settings, tmp_path / "capacity", progress=progress, reference=ref)
    data["lines"] = lines
    return data


def test_a_search_that_agrees_with_the_sweep_is_not_repeated(tmp_path, monkeypatch):
    knee = SimulatedService(TRUE_RPS, base_ms=15.0).knee_rps(SLO_MS)
    data = _capacity(tmp_path, monkeypatch, reference_rps=knee * 0.97, transient=False)
    cross = data["cross_check"]
    assert cross["agrees"] is True and cross["second"] is None and cross["note"] == ""
    assert not any("searching again" in line for line in data["lines"])
    assert data["plan"]["per_replica_rps"] == cross["first"]["max_rate_rps"]
    assert "agree when the larger max rate is at most 15%" in cross["definition"]


def test_a_transient_on_the_first_search_is_searched_again_from_the_sweeps_figure(tmp_path, monkeypatch):
    knee = SimulatedService(TRUE_RPS, base_ms=15.0).knee_rps(SLO_MS)
    # the first search's probes all see the replica at 60% (a host slowdown); the second sees it as it is
    data = _capacity(tmp_path, monkeypatch, reference_rps=knee * 0.97, transient=True)
    cross = data["cross_check"]
    first, second = cross["first"]["max_rate_rps"], cross["second"]["max_rate_rps"]
    assert not agree(first, knee) and second == pytest.approx(knee, rel=0.06)
    assert cross["second"]["settings"]["start_rps"] == pytest.approx(knee * 0.97)  # from the sweep's figure
    assert cross["agrees"] is True and data["plan"]["per_replica_rps"] == second
    assert "disagreed with the sweep's fp32 batch-32 search" in data["note"] and "a transient on the first" in data["note"]
    assert any("searching again from" in line for line in data["lines"])
    saved = json.loads((tmp_path / "capacity" / "capacity.json").read_text())
    assert saved["cross_check"]["agrees"] is True and saved["cross_check"]["reference"]["rate_rps"] == knee * 0.97


def test_a_disagreement_that_persists_is_said_not_hidden(tmp_path, monkeypatch):
    knee = SimulatedService(TRUE_RPS, base_ms=15.0).knee_rps(SLO_MS)
    data = _capacity(tmp_path, monkeypatch, reference_rps=knee * 1.5, transient=False)  # the sweep was the odd one
    cross = data["cross_check"]
    assert cross["agrees"] is False and cross["second"] is not None
    assert "still disagrees" in data["note"] and "not quiet enough" in data["note"]


def test_the_report_shows_the_cross_check_and_flags_a_disagreement(tmp_path, monkeypatch):
    from harness.report.perf_sections import capacity_section

    knee = SimulatedService(TRUE_RPS, base_ms=15.0).knee_rps(SLO_MS)
    data = _capacity(tmp_path, monkeypatch, reference_rps=knee * 1.5, transient=False)
    section = capacity_section(tmp_path / "capacity", tmp_path)
    text = " ".join(section.paragraphs)
    assert f"{knee * 1.5:.1f} req/s in the sweep's fp32 batch-32 search: DISAGREE" in text
    assert "agree when the larger max rate is at most 15%" in text
    assert any("disagrees with the sweep's" in finding for finding in section.findings)
    assert section.summary["agrees_with_sweep"] is False and data["cross_check"]["agrees"] is False


def test_an_effect_has_a_direction_only_beyond_the_noise_two_searches_of_one_configuration_show():
    from harness.sweep.figures import GAIN, LOSS, NO_EFFECT, NOISE_BAND, UNCLEAR, Bracket, direction, plain_ratio

    assert NOISE_BAND == AGREE_TOLERANCE
    assert direction(plain_ratio(6.37, 1.0)) == GAIN and direction(plain_ratio(1.0, 2.41)) == LOSS
    # bf16 over fp32 at batch 1 on this CPU: 0.93 in the service, 1.07 in the forward pass: neither is an effect
    assert direction(plain_ratio(0.93, 1.0)) == NO_EFFECT == direction(plain_ratio(1.07, 1.0))
    assert direction(plain_ratio(1.16, 1.0)) == GAIN and direction(plain_ratio(1.0, 1.16)) == LOSS
    assert direction(Bracket(2.5, 2.46, 2.72, False, "ratio")) == GAIN  # a range wholly above the band
    assert direction(Bracket(1.1, 1.05, 1.3, False, "ratio")) == UNCLEAR  # straddles the band's edge
    assert direction(Bracket(1.2, 1.2, None, False, "ratio")) == GAIN  # "at least 1.2"
    assert direction(Bracket(1.0, 1.0, None, False, "ratio")) == UNCLEAR  # "at least 1.0": could be anything above
    assert direction(Bracket(float("nan"), None, None, False, "ratio")) == UNCLEAR
