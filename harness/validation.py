"""Validation at the boundary: a pydantic model validated from user data, its first error turned into
a `ConfigError` naming the field (dotted path) and the bad value; numeric fields checked against their
ranges (`check_ranges`, for the benchmarks' plain dataclass settings); and the merge of layered settings.

At the bottom of the layering: the service spec and service settings (`harness.config`), the SLA
configuration, load profiles, experiments and the platforms all validate through `validate_model`,
so every bad value reads the same way.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError

__all__ = ["validate_model", "check_ranges", "deep_merge"]


M = TypeVar("M", bound=BaseModel)


_CROSS_FIELD = re.compile(r"^([A-Za-z_][\w.]*)=(.*?): (.*)$")


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def validate_model(cls: type[M], data: Any, *, source: str | None = None) -> M:
    """Return ``cls`` validated from ``data``; raise ConfigError naming the first bad field and value."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        value = first.get("input")
        reason = first.get("msg", "invalid").removeprefix("Value error, ")
        field = _field_path(tuple(first.get("loc", ())))
        if first.get("type") == "extra_forbidden":
            reason = "unknown field"
        if first.get("type") == "missing":
            value = None
        cross = _CROSS_FIELD.match(reason)
        if cross:  # a model-level rule names its own field: "replicas=3: topology 'single' has ..."
            prefix = field + "." if field != "(root)" else ""
            field, value, reason = prefix + cross.group(1), cross.group(2), cross.group(3)
        others = len(exc.errors()) - 1
        if others:
            reason += f" (and {others} more error{'s' if others > 1 else ''})"
        raise ConfigError(field, value, reason, source=source) from None


def check_ranges(settings: Any, ranges: Mapping[str, tuple[float, float]]) -> None:
    """Raise ConfigError naming the first of ``ranges``' fields of ``settings`` that is not a number within
    its (low, high), both ends included."""
    for name, (low, high) in ranges.items():
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ConfigError(name, value, f"must be a number from {low:g} to {high:g}")


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``base`` with ``overlay`` on top: nested mappings merge, anything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
