"""CPU throttling through a replica's cpu cgroup quota: a fault that needs nothing from the server.

As a noisy neighbour or a CPU limit set too low does to a container, `throttle_cpu` lowers one
replica's CFS quota (cgroup v1 ``cpu.cfs_quota_us``, v2 ``cpu.max``) to ``cpu_share`` of one CPU for
``duration_s``, then puts the quota it found back (on every way out, an interrupt included). The
replica keeps running, slowly: its answers and probes come late, and the balancer un-routes it when
readiness fails. It needs the deployment's cpu cgroups, i.e. ``resources.limits.cpu`` in the spec
(the experiment's overlay sets it) and a writable cpu hierarchy (``cpu_enforcement`` in the state file).
A Chaos Toolkit activity (python provider), light to import like `harness.chaos.activities`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed

from harness.chaos.targets import failing, read_state_file, remember, select

__all__ = ["MAX_THROTTLE_S", "throttle_cpu", "quota_file"]

MAX_THROTTLE_S = 3600.0
_MIN_QUOTA_US = 1000  # the kernel's smallest CFS quota


def quota_file(row: dict[str, Any]) -> tuple[Path, int]:
    """Return the cpu quota file of a replica's cgroup and the cgroup version; raise ActivityFailed when it has none."""
    for directory in str(row.get("cgroup") or "").split(","):
        for name, version in (("cpu.max", 2), ("cpu.cfs_quota_us", 1)):
            path = Path(directory.strip()) / name
            if directory.strip() and path.exists():
                return path, version
    raise ActivityFailed(f"replica {row.get('name')} has no cpu cgroup ({row.get('cgroup')}); set resources.limits.cpu")


def _period_us(path: Path, version: int) -> int:
    if version == 2:
        return int(path.read_text().split()[1])
    return int((path.parent / "cpu.cfs_period_us").read_text())


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)


@failing
def throttle_cpu(state_file: str, replica: str = "first-ready", cpu_share: float = 0.05,
                 duration_s: float = 5.0) -> dict[str, Any]:
    """Throttle one replica to ``cpu_share`` of one CPU for ``duration_s``, then restore its quota.

    Returns the replica, the quota before and during (microseconds per period) and the exact times.
    Fails when the deployment has no cpu cgroups (``cpu_enforcement`` none) or a value is out of range.
    """
    for name, value, high in (("cpu_share", cpu_share, 64.0), ("duration_s", duration_s, MAX_THROTTLE_S)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) <= high:
            raise ActivityFailed(f"{name}={value!r}: must be a number above 0 and at most {high:g}")
    state = read_state_file(state_file)
    enforcement = str(state.get("cpu_enforcement") or "none")
    if not enforcement.startswith("cgroup"):
        raise ActivityFailed(f"cpu_enforcement={enforcement!r}: the replicas have no cpu cgroup quota to lower "
                             f"(set resources.limits.cpu, on a machine whose cpu cgroups can be written)")
    row = select(state, replica)[0]
    path, version = quota_file(row)
    before = path.read_text().strip()
    period_us = _period_us(path, version)
    quota_us = max(_MIN_QUOTA_US, int(float(cpu_share) * period_us))
    _write(path, f"{quota_us} {period_us}" if version == 2 else str(quota_us))
    at = remember(row, "throttle_cpu")
    try:
        time.sleep(float(duration_s))
    finally:
        try:
            _write(path, before if version == 2 else before.split()[0])
        except FileNotFoundError:
            pass  # the cgroup is gone: the deployment was torn down meanwhile
        restored = time.time()
    return {"replica": row["name"], "quota_us_before": before, "quota_us": quota_us, "period_us": period_us,
            "time_s": at, "restored_at_s": restored, "throttled_s": round(restored - at, 4)}
