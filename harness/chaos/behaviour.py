"""Whether a fault produced the platform behaviour it claims, judged from the platform's events.

Events are the platform's records (`harness.platforms.base.Event`: ``time_s``, ``type``,
``replica``, ``exit_code``, extras such as ``delay_s`` on BackOff). An `Expectation` names what must
follow the injection: a sequence of event types in order, types that must not appear, an exit code,
CrashLoopBackOff delays that grow. `check_behaviour` returns findings (empty: the behaviour was
seen), as `check_*` functions do.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

from harness.chaos.experiment import Expectation
from harness.platforms.base import BACK_OFF, EXITED, OOM_KILLED, Event

__all__ = ["events_after", "match_sequence", "backoff_delays_s", "check_behaviour"]

_DELAY = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*s\b")


def events_after(events: Iterable[Event], since_s: float, replica: str | None = None, until_s: float = math.inf) -> list[Event]:
    """Return the events in ``[since_s, until_s)`` (wall clock), of ``replica`` when given."""
    return [e for e in events if since_s <= e.time_s < until_s and (replica is None or e.replica == replica)]


def match_sequence(events: Sequence[Event], sequence: Sequence[str]) -> list[Event]:
    """Return the events matching ``sequence`` in order (a subsequence); shorter if not all were seen."""
    matched: list[Event] = []
    for event in events:
        if len(matched) == len(sequence):
            break
        if event.type == sequence[len(matched)]:
            matched.append(event)
    return matched


def backoff_delays_s(events: Iterable[Event]) -> list[float]:
    """Return the CrashLoopBackOff delays announced by BackOff events, in order.

    The delay is the event's ``delay_s`` when it has one, else the first ``<number>s`` in its
    message ("Back-off 2s restarting failed container").
    """
    delays = []
    for event in events:
        if event.type != BACK_OFF:
            continue
        value = event.extra.get("delay_s")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            delays.append(float(value))
            continue
        found = _DELAY.search(event.message)
        if found:
            delays.append(float(found.group(1)))
    return delays


def _growing_until_cap(delays: Sequence[float]) -> bool:
    # Kubernetes doubles the delay up to a cap and then repeats the cap: growth, then a plateau
    cap = max(delays)
    head = [d for d in delays if d < cap] + [cap]
    ordered = all(a < b for a, b in zip(head, head[1:]))
    return len(delays) >= 2 and len(head) >= 2 and ordered and list(delays[: len(head)]) == head


def _types(events: Iterable[Event]) -> str:
    return " -> ".join(e.type for e in events)


def check_behaviour(
    events: Sequence[Event], expectation: Expectation, *, since_s: float, replica: str | None = None, until_s: float = math.inf
) -> list[str]:
    """Return findings where the events in ``[since_s, until_s)`` differ from ``expectation`` (empty: seen).

    With ``expectation.same_replica`` only the events of ``replica`` (the one the fault hit) count.
    ``until_s`` keeps the teardown's own Killing/Exited events out of the judgement.
    """
    scope = replica if expectation.same_replica else None
    window = events_after(events, since_s, scope, until_s)
    who = f" on replica {scope}" if scope else ""
    findings = []
    if expectation.sequence:
        matched = match_sequence(window, expectation.sequence)
        if len(matched) < len(expectation.sequence):
            missing = expectation.sequence[len(matched)]
            after = _types(matched) or "the injection"
            findings.append(
                f"expected {' -> '.join(expectation.sequence)}{who}: no {missing} after {after} "
                f"(seen: {_types(window) or 'no events'})"
            )
    for kind in expectation.absent:
        hits = [e for e in window if e.type == kind]
        if hits:
            findings.append(f"expected no {kind}{who}, saw {len(hits)} (first: {hits[0].reason or hits[0].message})")
    if expectation.exit_code is not None:
        codes = [e.exit_code for e in window if e.type in (EXITED, OOM_KILLED)]
        if expectation.exit_code not in codes:
            findings.append(f"expected an exit with code {expectation.exit_code}{who}; exit codes seen: {codes or 'none'}")
    if expectation.backoff_growing:
        # each replica has its own back-off: judge the delays of each, and want one that grew
        per_replica: dict[str | None, list[float]] = {}
        for event in window:
            per_replica.setdefault(event.replica, []).extend(backoff_delays_s([event]))
        delays = {name: found for name, found in per_replica.items() if found}
        if not delays or not all(_growing_until_cap(found) for found in delays.values()):
            seen = "; ".join(f"{name}: {found}" for name, found in delays.items()) or "none"
            findings.append(f"expected CrashLoopBackOff with growing delays{who}; BackOff delays seen: {seen}")
    return findings
