"""The chaos run's background load: an interrupt while its generator starts still lets `stop` end it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.chaos.loadgen import BackgroundLoad

from ..load.interrupts import Interrupt, interrupt_after_fork, is_gone, sigint_raises  # noqa: F401


@pytest.mark.parametrize("kind", ["rate", "locust"])
def test_an_interrupt_right_after_the_generator_is_spawned_leaves_it_recorded_and_stop_ends_it(
    tmp_path, interrupt_after_fork, kind
):
    load = BackgroundLoad(kind, "http://127.0.0.1:9", tmp_path, max_duration_s=60)
    try:
        with pytest.raises(Interrupt):
            load.spawn()  # SIGINT lands before spawn() returns, as a Ctrl-C during a chaos run's start can
    finally:
        load.stop()  # what the chaos run's teardown does
    [pid] = interrupt_after_fork
    assert is_gone(pid), f"the {kind} generator outlived the teardown"


@pytest.mark.parametrize("kind", ["rate", "locust"])
def test_a_relative_out_dir_reaches_the_generator_absolute(tmp_path, monkeypatch, kind):
    from ..load.fake_generator import hand_over_to_fake, path_arguments, read_seen

    hand_over_to_fake(monkeypatch, tmp_path / "seen.json")
    monkeypatch.chdir(tmp_path)
    load = BackgroundLoad(kind, "http://127.0.0.1:9", "rel/dir", max_duration_s=5)
    try:
        load.spawn()
        seen = read_seen(tmp_path / "seen.json")
    finally:
        load.stop()
    out = tmp_path.resolve() / "rel" / "dir"
    assert load.requests_path == out / "requests.csv"
    assert seen["cwd"] == str(out)
    handed = path_arguments(seen)
    assert all(Path(a).is_absolute() for a in handed), handed
    assert str(out / ("rate_config.json" if kind == "rate" else "requests.csv")) in handed
