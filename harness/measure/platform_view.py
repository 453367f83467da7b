"""The platform's view of a fault, from its events: the first kill, OOM kill, exit code, readiness
lost, the affected replica's restart and Ready-again times, restart and back-off counts.

Defined in `harness.measure.recovery` (**Platform view**), which sets this view beside what the
clients saw; events are mappings or `harness.platforms.base.Event` objects (anything with ``to_dict``).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping

from harness.errors import ConfigError

__all__ = ["KILL_TYPES", "DISRUPTION_TYPES", "parse_events", "first_event", "platform_view"]


KILL_TYPES = ("Killing", "OOMKilled", "Exited")
DISRUPTION_TYPES = KILL_TYPES + ("NotReady",)
_READY_TYPES = ("Ready", "Recovered")
_AFFECTED_TYPES = DISRUPTION_TYPES + ("Unhealthy",)


def _event_dict(event: Any) -> dict[str, Any]:
    if isinstance(event, Mapping):
        return dict(event)
    if hasattr(event, "to_dict"):
        return dict(event.to_dict())
    raise ConfigError("events", type(event).__name__, "expected a mapping or an event with to_dict()")


def parse_events(events: Iterable[Any]) -> list[dict[str, Any]]:
    """Return the events as dicts sorted by ``time_s``; raise ConfigError naming a malformed event's field."""
    parsed = []
    for index, raw in enumerate(events):
        data = _event_dict(raw)
        try:
            data["time_s"] = float(data["time_s"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"events[{index}].time_s", data.get("time_s"), "expected epoch seconds") from None
        if not isinstance(data.get("type"), str) or not data["type"]:
            raise ConfigError(f"events[{index}].type", data.get("type"), "expected an event type such as 'Killing'")
        parsed.append(data)
    return sorted(parsed, key=lambda e: e["time_s"])


def first_event(
    events: list[dict[str, Any]], types: tuple[str, ...], after_s: float = -math.inf, replica: Any = None
) -> dict | None:
    """Return the first parsed event of one of ``types`` at or after ``after_s`` (on ``replica`` when given), or None."""
    for event in events:
        same_replica = replica is None or event.get("replica") == replica
        if event["type"] in types and event["time_s"] >= after_s and same_replica:
            return event
    return None


def platform_view(events: Iterable[Any], start_s: float = -math.inf, end_s: float = math.inf) -> dict[str, Any]:
    """Return the platform's view of ``[start_s, end_s)`` from its events (mappings or Event objects).

    Keys: killed_at_s, kill_type, kill_reason, oom_killed, exited_at_s, exit_code, not_ready_at_s,
    restarted_at_s, ready_again_at_s, restart_count, back_off_count, replicas_affected,
    event_counts, events. Raises ConfigError naming a malformed event's field.
    """
    window = [e for e in parse_events(events) if start_s <= e["time_s"] < end_s]
    kill = first_event(window, KILL_TYPES)
    exited = first_event(window, ("Exited",))
    not_ready = first_event(window, ("NotReady",))
    disruption = first_event(window, DISRUPTION_TYPES)
    restarted = ready_again = None
    if disruption is not None:
        replica = disruption.get("replica")
        restarted = first_event(window, ("Started",), disruption["time_s"], replica)
        ready_again = first_event(window, _READY_TYPES, disruption["time_s"], replica)
    exit_event = exited or first_event(window, ("OOMKilled",))
    counts = Counter(e["type"] for e in window)
    return {
        "killed_at_s": kill["time_s"] if kill else None,
        "kill_type": kill["type"] if kill else None,
        "kill_reason": (kill.get("reason") or None) if kill else None,
        "oom_killed": counts["OOMKilled"] > 0,
        "exited_at_s": exited["time_s"] if exited else None,
        "exit_code": exit_event.get("exit_code") if exit_event else None,
        "not_ready_at_s": not_ready["time_s"] if not_ready else None,
        "restarted_at_s": restarted["time_s"] if restarted else None,
        "ready_again_at_s": ready_again["time_s"] if ready_again else None,
        "restart_count": counts["Started"],
        "back_off_count": counts["BackOff"],
        "replicas_affected": sorted(
            {str(e["replica"]) for e in window if e["type"] in _AFFECTED_TYPES and e.get("replica") is not None}
        ),
        "event_counts": dict(sorted(counts.items())),
        "events": len(window),
    }
