"""Load profiles: validated shapes of closed-loop (Locust) load, their user-count math, named presets.

No Locust import here: the harness validates profiles in its own process, serialises them to the
``HARNESS_LOAD_PROFILE`` environment variable (JSON), and the locustfile's `LoadTestShape` classes
call `target_users` in the Locust process. Keeping the shape math a pure function lets it be tested
without importing Locust (which monkey-patches the interpreter with gevent).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.config import DEFAULT_MODEL
from harness.errors import ConfigError
from harness.protocolspec import ProtocolSettings
from harness.validation import validate_model

__all__ = [
    "PROFILE_KINDS",
    "ENV_PROFILE",
    "ENV_MODEL",
    "ENV_REQUESTS_FILE",
    "ENV_RECORDS_TO_MASTER",
    "ENV_WORKERS_FILE",
    "LoadProfile",
    "PRESETS",
    "target_users",
    "build_profile",
    "get_preset",
    "profile_from_env",
    "check_http_url",
    "check_model_name",
]

PROFILE_KINDS = ("steady", "ramp", "step", "spike", "soak")
ENV_PROFILE = "HARNESS_LOAD_PROFILE"  # JSON of a LoadProfile, read by the locustfile
ENV_MODEL = "HARNESS_MODEL"  # model to send requests to when no profile is given
ENV_REQUESTS_FILE = "HARNESS_REQUESTS_FILE"  # per-request CSV the locustfile appends to
ENV_RECORDS_TO_MASTER = "HARNESS_RECORDS_TO_MASTER"  # "1": a Locust worker sends its records to its master
ENV_WORKERS_FILE = "HARNESS_WORKERS_FILE"  # a Locust master's JSON lines of its workers' CPU and records

Kind = Literal["steady", "ramp", "step", "spike", "soak"]


def check_http_url(value: str) -> str:
    """Return an http(s) base URL without its trailing slash; raise ValueError for any other scheme."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


def check_model_name(value: str) -> str:
    """Return ``value`` if it names a reference model; raise ValueError listing the known ones."""
    from harness.modelnames import MODEL_NAMES

    if value not in MODEL_NAMES:
        raise ValueError(f"unknown model; choose one of {', '.join(MODEL_NAMES)}")
    return value


class LoadProfile(BaseModel):
    """One closed-loop load profile: how many users over time, against which model.

    ``users`` is the steady (and soak) user count and the ceiling of ``step``; ``ramp`` goes from
    ``ramp_from_users`` to ``ramp_to_users`` (default ``users``) over the whole duration; ``spike``
    holds ``spike_base_users`` and jumps to ``spike_peak_users`` for ``spike_length_s`` starting at
    ``spike_start_s``. The test stops at ``duration_s``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)

    kind: Kind = "steady"
    users: int = Field(4, ge=1, le=10_000)
    spawn_rate: float = Field(10.0, gt=0, le=10_000)
    duration_s: float = Field(10.0, gt=0, le=7 * 86400)
    ramp_from_users: int = Field(1, ge=0, le=10_000)
    ramp_to_users: int | None = Field(None, ge=1, le=10_000)
    step_users: int = Field(1, ge=1, le=10_000)
    step_s: float = Field(5.0, gt=0, le=86400)
    spike_base_users: int = Field(1, ge=0, le=10_000)
    spike_peak_users: int | None = Field(None, ge=1, le=10_000)
    spike_start_s: float | None = Field(None, ge=0)
    spike_length_s: float | None = Field(None, gt=0)
    model: str = DEFAULT_MODEL
    batch_size: int = Field(1, ge=1, le=4096)
    request_timeout_s: float = Field(10.0, gt=0, le=3600)
    think_time_s: float = Field(0.0, ge=0, le=3600)
    protocol: ProtocolSettings | None = None  # what users send (`harness.load.protocols`); None: oip-v2 to ``model``

    _known_model = field_validator("model")(lambda value: check_model_name(value))

    @model_validator(mode="after")
    def _shape_fits(self) -> "LoadProfile":
        if self.kind == "ramp" and self.ramp_to_users is not None and self.ramp_to_users < self.ramp_from_users:
            raise ValueError(f"ramp_to_users={self.ramp_to_users!r}: below ramp_from_users={self.ramp_from_users!r}")
        if self.kind == "step" and self.step_users > self.users:
            raise ValueError(f"step_users={self.step_users!r}: larger than users={self.users!r}")
        if self.kind == "spike":
            peak = self.peak_users
            if peak < self.spike_base_users:
                raise ValueError(f"spike_peak_users={peak!r}: below spike_base_users={self.spike_base_users!r}")
            start, length = self.spike_window_s
            if start + length > self.duration_s:
                raise ValueError(
                    f"spike_length_s={length!r}: the spike ({start:g} s + {length:g} s) ends after duration_s={self.duration_s!r}"
                )
        return self

    @property
    def peak_users(self) -> int:
        """The largest user count the profile reaches."""
        if self.kind == "ramp":
            return max(self.ramp_from_users, self.ramp_to_users or self.users)
        if self.kind == "spike":
            return self.spike_peak_users or self.users
        return self.users

    @property
    def spike_window_s(self) -> tuple[float, float]:
        """(start, length) of the spike; by default the middle fifth of the run."""
        start = self.duration_s * 0.4 if self.spike_start_s is None else self.spike_start_s
        length = self.duration_s * 0.2 if self.spike_length_s is None else self.spike_length_s
        return start, length

    def to_env(self) -> str:
        """Return the profile as the JSON string the locustfile reads from ``HARNESS_LOAD_PROFILE``."""
        return self.model_dump_json()


def target_users(profile: LoadProfile, elapsed_s: float) -> tuple[int, float] | None:
    """Return (user count, spawn rate) the shape asks for ``elapsed_s`` into the test, or None to stop.

    Spawn rates are raised where needed so that a change completes within about a second: Locust's
    shape worker blocks until a spawn finishes, and a slow spawn would skip the next stage.
    """
    if elapsed_s >= profile.duration_s or elapsed_s < 0:
        return None
    rate = profile.spawn_rate
    if profile.kind in ("steady", "soak"):
        return profile.users, rate
    if profile.kind == "ramp":
        start, end = profile.ramp_from_users, profile.ramp_to_users or profile.users
        # each user count from start to end holds for an equal slice of the run, so the end is reached
        levels = end - start + 1
        return min(start + int(math.floor(levels * elapsed_s / profile.duration_s + 1e-9)), end), max(rate, 1.0)
    if profile.kind == "step":
        steps = int(elapsed_s // profile.step_s) + 1
        return min(profile.users, profile.step_users * steps), max(rate, float(profile.step_users))
    start, length = profile.spike_window_s
    if start <= elapsed_s < start + length:
        return profile.peak_users, max(rate, float(profile.peak_users - profile.spike_base_users))
    return profile.spike_base_users, max(rate, float(profile.peak_users))


def build_profile(
    kind: str, duration_s: float, *, users: int | None = None, model: str | None = None, **fields: Any
) -> LoadProfile:
    """Return a profile of ``kind`` with shape parameters scaled to ``duration_s``; raise ConfigError.

    Defaults: ramp from 1 to ``users``; step in four equal steps up to ``users``; spike from a quarter
    of ``users`` to ``users`` in the middle fifth of the run.
    """
    if kind not in PROFILE_KINDS:
        raise ConfigError("profile", kind, f"unknown profile; choose one of {', '.join(PROFILE_KINDS)}")
    data: dict[str, Any] = {"kind": kind, "duration_s": duration_s}
    if users is not None:
        data["users"] = users
    if model is not None:
        data["model"] = model
    top = users if users is not None else LoadProfile.model_fields["users"].default
    if kind == "step" and isinstance(top, int) and top >= 1:
        data.update(step_users=max(top // 4, 1), step_s=duration_s / 4 if isinstance(duration_s, (int, float)) else 5.0)
    if kind == "spike" and isinstance(top, int) and top >= 1:
        data.update(spike_base_users=max(top // 4, 1), spike_peak_users=top)
    if kind == "ramp" and isinstance(top, int) and top >= 1:
        data.update(ramp_from_users=1, ramp_to_users=top)
    data.update(fields)
    return validate_model(LoadProfile, data, source=f"profile {kind}")


PRESETS: dict[str, LoadProfile] = {
    # smoke: a few seconds of light load, for CI and quick checks
    "smoke": LoadProfile(kind="steady", users=4, spawn_rate=4, duration_s=10),
    # nightly: one profile per shape, long enough for steady state, short enough for a nightly budget
    "nightly-steady": LoadProfile(kind="steady", users=16, spawn_rate=8, duration_s=300),
    "nightly-ramp": LoadProfile(kind="ramp", users=32, ramp_from_users=1, ramp_to_users=32, duration_s=300),
    "nightly-step": LoadProfile(kind="step", users=32, step_users=8, step_s=60, duration_s=300),
    "nightly-spike": LoadProfile(
        kind="spike", users=32, spike_base_users=8, spike_peak_users=32, spike_start_s=120, spike_length_s=60, duration_s=300
    ),
    "nightly-soak": LoadProfile(kind="soak", users=8, spawn_rate=8, duration_s=3600),
}


def get_preset(name: str) -> LoadProfile:
    """Return the named preset profile; raise ConfigError naming the known presets."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError("profile", name, f"unknown preset; choose one of {', '.join(PRESETS)}") from None


def profile_from_env(environ: Mapping[str, str] | None = None) -> LoadProfile | None:
    """Return the profile in ``HARNESS_LOAD_PROFILE`` (JSON), or None when unset; raise ConfigError."""
    environ = os.environ if environ is None else environ
    text = environ.get(ENV_PROFILE, "").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(ENV_PROFILE, text[:80], f"not valid JSON: {exc.msg}") from exc
    return validate_model(LoadProfile, data, source=ENV_PROFILE)
