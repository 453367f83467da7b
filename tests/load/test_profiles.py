"""Load profiles: validation naming the field, shape math over time, env round trip, presets."""

from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.load.profiles import (
    ENV_PROFILE,
    PRESETS,
    PROFILE_KINDS,
    LoadProfile,
    build_profile,
    get_preset,
    profile_from_env,
    target_users,
)


def users_over(profile: LoadProfile, times: list[float]) -> list[int | None]:
    return [None if (tick := target_users(profile, t)) is None else tick[0] for t in times]


def test_steady_and_soak_hold_the_user_count_then_stop():
    for kind in ("steady", "soak"):
        profile = build_profile(kind, 10, users=6)
        assert users_over(profile, [0, 2.5, 9.99]) == [6, 6, 6]
        assert target_users(profile, 10.0) is None


def test_ramp_rises_linearly_from_start_to_peak():
    profile = build_profile("ramp", 8, users=8)  # 1 -> 8, one level per second
    assert users_over(profile, [0, 1, 2, 3.5, 7, 7.99, 8]) == [1, 2, 3, 4, 8, 8, None]
    explicit = LoadProfile(kind="ramp", users=5, ramp_from_users=2, ramp_to_users=10, duration_s=9)
    counts = users_over(explicit, [i * 0.5 for i in range(18)])
    assert counts[0] == 2 and counts[-1] == 10
    assert counts == sorted(counts)  # never goes down


def test_step_adds_users_every_step_up_to_the_ceiling():
    profile = LoadProfile(kind="step", users=10, step_users=3, step_s=2, duration_s=12)
    assert users_over(profile, [0, 1.9, 2, 4, 6, 8, 11.9]) == [3, 3, 6, 9, 10, 10, 10]


def test_spike_jumps_to_peak_for_its_window_only():
    profile = LoadProfile(kind="spike", users=4, spike_base_users=2, spike_peak_users=12,
                          spike_start_s=3, spike_length_s=2, duration_s=8)
    assert users_over(profile, [0, 2.99, 3, 4.99, 5, 7.9, 8]) == [2, 2, 12, 12, 2, 2, None]
    # the spawn rate is high enough to reach the peak within about a second
    assert target_users(profile, 3)[1] >= 10
    default = build_profile("spike", 10, users=8)  # base a quarter of the peak, middle fifth of the run
    assert users_over(default, [1, 4, 5.9, 6.1]) == [2, 8, 8, 2]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "burst"}, "profile"),  # build_profile speaks for the --profile option
        ({"users": 0}, "users"),
        ({"duration_s": -1}, "duration_s"),
        ({"model": "no-such-model"}, "model"),
        ({"kind": "ramp", "ramp_from_users": 9, "ramp_to_users": 3}, "ramp_to_users"),
        ({"kind": "step", "users": 2, "step_users": 5}, "step_users"),
        ({"kind": "spike", "spike_base_users": 9, "spike_peak_users": 3}, "spike_peak_users"),
        ({"kind": "spike", "duration_s": 10, "spike_start_s": 8, "spike_length_s": 5}, "spike_length_s"),
        ({"think_time_s": -0.1}, "think_time_s"),
        ({"userz": 3}, "userz"),
    ],
)
def test_invalid_profiles_raise_config_error_naming_the_field(data, field):
    with pytest.raises(ConfigError) as info:
        build_profile(data.pop("kind", "steady"), data.pop("duration_s", 10), **data)
    assert info.value.field == field


def test_unknown_kind_and_preset_name_the_value():
    with pytest.raises(ConfigError, match="burst"):
        build_profile("burst", 5)
    with pytest.raises(ConfigError, match="nope"):
        get_preset("nope")


def test_profile_round_trips_through_the_environment_variable():
    profile = build_profile("spike", 12, users=8, think_time_s=0.01, request_timeout_s=2)
    assert profile_from_env({ENV_PROFILE: profile.to_env()}) == profile
    assert profile_from_env({}) is None
    with pytest.raises(ConfigError) as info:
        profile_from_env({ENV_PROFILE: "{not json"})
    assert info.value.field == ENV_PROFILE
    with pytest.raises(ConfigError) as info:
        profile_from_env({ENV_PROFILE: json.dumps({"kind": "steady", "users": -3})})
    assert info.value.field == "users"


def test_presets_cover_smoke_and_every_nightly_shape():
    assert get_preset("smoke").duration_s <= 30
    nightly = {p.kind for name, p in PRESETS.items() if name.startswith("nightly")}
    assert nightly == set(PROFILE_KINDS)
    for profile in PRESETS.values():
        assert target_users(profile, 0) is not None
        assert target_users(profile, profile.duration_s) is None
