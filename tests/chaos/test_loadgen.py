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


@pytest.mark.parametrize("kind", ["rate", "locust"])
def test_the_generator_is_started_with_the_load_packages_one_builder(tmp_path, monkeypatch, kind):
    from harness import processes
    from harness.load import locust_runner, rate

    built: list[tuple[list[str], dict[str, str]]] = []
    started: list[tuple[list[str], dict[str, str]]] = []
    real_locust, real_rate = locust_runner.locust_command, rate.rate_command
    monkeypatch.setattr(locust_runner, "locust_command", lambda *a, **k: built.append(real_locust(*a, **k)) or built[-1])
    monkeypatch.setattr(rate, "rate_command", lambda *a, **k: built.append((real_rate(*a, **k), {})) or built[-1][0])

    class Started:
        pid, returncode = 0, 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(processes, "spawn", lambda argv, **options: started.append((list(argv), options["env"])) or Started())
    monkeypatch.setattr(processes, "stop", lambda proc, **_options: 0)
    BackgroundLoad(kind, "http://127.0.0.1:9", tmp_path, max_duration_s=5, users=3).spawn().stop()
    assert len(built) == 1 and started == built  # what the builder returned, and nothing of its own
    argv, env = built[0]
    if kind == "locust":
        assert "--host" in argv and argv[argv.index("--host") + 1] == "http://127.0.0.1:9"
        assert env["HARNESS_REQUESTS_FILE"] == str(tmp_path.resolve() / "requests.csv")
    else:
        assert argv[-1] == str(tmp_path.resolve() / "rate_config.json") and env == {}
