"""Service flags: `harness serve` and `python -m harness.service` share them; precedence is flag > env > file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.service.options import add_service_arguments, config_from_args


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_service_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_override_environment_which_overrides_the_file(tmp_path: Path) -> None:
    file = tmp_path / "service.yaml"
    file.write_text("model: text-encoder\nmax_batch_size: 8\nfault_token: from-file\nlive_during_load: false\n")
    args = _parse("--config", str(file), "--max-batch-size", "16", "--precision", "bf16")
    config = config_from_args(args, env={"HARNESS_FAULT_TOKEN": "from-env"})
    assert config.model == "text-encoder"  # file
    assert config.max_batch_size == 16 and config.precision == "bf16"  # flags
    assert config.fault_token == "from-env"  # environment over file
    assert config.live_during_load is False
    assert config_from_args(_parse("--config", str(file), "--live-during-load"), env={}).live_during_load is True


def test_unset_flags_leave_the_defaults() -> None:
    config = config_from_args(_parse(), env={})
    assert (config.model, config.max_batch_size, config.max_queue_delay_ms, config.port) == ("ranker-mlp", 32, 50.0, 8000)


@pytest.mark.parametrize(
    "argv, field",
    [(["--model", "gpt-17"], "model"), (["--max-queue-size", "0"], "max_queue_size"), (["--grace-period-s", "-1"], "grace_period_s")],
)
def test_bad_values_name_the_field(argv: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_args(_parse(*argv), env={})
    assert caught.value.field == field


def test_start_faults_round_trip_through_their_flag() -> None:
    from harness.service.options import start_fault_flags

    args = _parse("--start-fault", 'slow-inference:{"delay_ms": 20}', "--start-fault", "crash")
    config = config_from_args(args, env={})
    assert [(f.kind, f.params) for f in config.start_faults] == [("slow-inference", {"delay_ms": 20}), ("crash", {})]
    again = config_from_args(_parse(*start_fault_flags(config)), env={})
    assert again.start_faults == config.start_faults
    with pytest.raises(SystemExit):
        _parse("--start-fault", "slow-inference:not json")
    with pytest.raises(ConfigError) as caught:
        config_from_args(_parse("--start-fault", 'slow-inference:{"factor": 0.5}'), env={})
    assert (caught.value.field, caught.value.value) == ("start_faults.0.params.factor", "0.5")
