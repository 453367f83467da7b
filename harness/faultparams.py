"""The service's fault hooks as data: their kinds and parameters, validated.

At the bottom of the layering because two layers check the same request: the reference service's
fault endpoint (`harness.service.faults`) and the service spec's ``start_faults``
(`harness.config.StartFault`), which is validated when the spec is read, before anything runs.

Kinds and parameters (anything else is refused naming the field and value):
  probe-delay     probe "live"|"ready", delay_s >= 0, duration_s
  slow-inference  delay_ms >= 0 (added to every forward pass, whatever its size) and/or
                  factor >= 1 (every forward pass takes factor x its own measured time: a build that
                  is proportionally slower, e.g. 1.1 = 10% slower), duration_s; at least one of the two
  memory          rate_mb_s (a leak, growing until duration_s or max_mb) or target_mb (a hog), duration_s
  hang            duration_s: the event loop is blocked, so nothing is answered, then it resumes
  crash           exit_code (default 1), delay_s (default 0): os._exit after the delay
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["FAULT_KINDS", "MAX_DURATION_S", "FaultError", "validate_fault"]

FAULT_KINDS = ("probe-delay", "slow-inference", "memory", "hang", "crash")
MAX_DURATION_S = 3600.0
MAX_SLOWDOWN_FACTOR = 100.0
DEFAULT_DURATION_S = {"probe-delay": 30.0, "slow-inference": 30.0, "memory": 30.0, "hang": 10.0}
DEFAULT_LEAK_CAP_MB = 8192.0  # a leak stops growing here unless max_mb says otherwise: the host is shared


class FaultError(Exception):
    """A fault request the service refuses; ``status`` is the HTTP code (400 bad params, 404 unknown kind)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _number(params: dict[str, Any], name: str, default: float | None, low: float, high: float, *, strict_low: bool = False) -> float:
    value = params.get(name, default)
    if value is None:
        raise FaultError(f"{name}: required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FaultError(f"{name}={value!r}: must be a finite number")
    if value < low or (strict_low and value == low) or value > high:
        bound = f"> {low}" if strict_low else f">= {low}"
        raise FaultError(f"{name}={value!r}: must be {bound} and <= {high}")
    return float(value)


def validate_fault(kind: str, params: Any) -> dict[str, Any]:
    """Return the normalised parameters of a fault request; raise FaultError naming the field and value."""
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; choose one of {', '.join(FAULT_KINDS)}", status=404)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise FaultError(f"body must be a JSON object of parameters, got {type(params).__name__}")
    allowed = {
        "probe-delay": {"probe", "delay_s", "duration_s"},
        "slow-inference": {"delay_ms", "factor", "duration_s"},
        "memory": {"rate_mb_s", "target_mb", "max_mb", "duration_s"},
        "hang": {"duration_s"},
        "crash": {"exit_code", "delay_s"},
    }[kind]
    for name in params:
        if name not in allowed:
            raise FaultError(f"{name}={params[name]!r}: unknown parameter for {kind}; allowed: {', '.join(sorted(allowed))}")
    out: dict[str, Any] = {}
    if kind != "crash":
        out["duration_s"] = _number(params, "duration_s", DEFAULT_DURATION_S[kind], 0.0, MAX_DURATION_S, strict_low=True)
    if kind == "probe-delay":
        probe = params.get("probe")
        if probe not in ("live", "ready"):
            raise FaultError(f"probe={probe!r}: must be 'live' or 'ready'")
        out["probe"] = probe
        out["delay_s"] = _number(params, "delay_s", None, 0.0, MAX_DURATION_S)
    elif kind == "slow-inference":
        if "delay_ms" not in params and "factor" not in params:
            raise FaultError("delay_ms=None, factor=None: give delay_ms (added to every forward pass) "
                             "or factor (x every forward pass's own time), or both")
        out["delay_ms"] = _number(params, "delay_ms", 0.0, 0.0, MAX_DURATION_S * 1000)
        out["factor"] = _number(params, "factor", 1.0, 1.0, MAX_SLOWDOWN_FACTOR)
    elif kind == "memory":
        if ("rate_mb_s" in params) == ("target_mb" in params):
            raise FaultError(f"rate_mb_s={params.get('rate_mb_s')!r}, target_mb={params.get('target_mb')!r}: give exactly one")
        if "rate_mb_s" in params:
            out["rate_mb_s"] = _number(params, "rate_mb_s", None, 0.0, 65536.0, strict_low=True)
            out["max_mb"] = _number(params, "max_mb", DEFAULT_LEAK_CAP_MB, 0.0, 1_048_576.0, strict_low=True)
        else:
            if "max_mb" in params:
                raise FaultError(f"max_mb={params['max_mb']!r}: only applies to a leak (rate_mb_s)")
            out["target_mb"] = _number(params, "target_mb", None, 0.0, 1_048_576.0, strict_low=True)
    elif kind == "crash":
        code = params.get("exit_code", 1)
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
            raise FaultError(f"exit_code={code!r}: must be an integer from 0 to 255")
        out["exit_code"] = code
        out["delay_s"] = _number(params, "delay_s", 0.0, 0.0, MAX_DURATION_S)
    return out
