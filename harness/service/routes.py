"""The service's routes: one table of path templates and methods, matched without a framework.

The table is the single source of truth for what the app serves: `ServiceApp` dispatches on it, a
405 answer's ``Allow`` header comes from it, and a test keeps it equal to the OpenAPI document served
at ``/v2/openapi.json`` (``harness/service/openapi.json``), path for path and method for method.
Paths match segment by segment; empty segments are ignored (``/v2/`` is ``/v2``), and ``{name}``
matches exactly one segment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["Route", "ROUTES", "OPENAPI_PATH", "match", "openapi_document", "openapi_bytes"]

OPENAPI_PATH = "/v2/openapi.json"
_OPENAPI_FILE = "openapi.json"


@dataclass(frozen=True)
class Route:
    """A path template (OpenAPI syntax), the methods it answers, and the name of the app's handler."""

    template: str
    methods: tuple[str, ...]
    handler: str

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(part for part in self.template.split("/") if part)


ROUTES: tuple[Route, ...] = (
    Route("/metrics", ("GET",), "metrics"),
    Route("/v2", ("GET",), "server_metadata"),
    Route("/v2/health/live", ("GET",), "live"),
    Route("/v2/health/ready", ("GET",), "ready"),
    Route(OPENAPI_PATH, ("GET",), "openapi"),
    Route("/v2/repository/index", ("POST",), "repository_index"),
    Route("/v2/models/{model_name}", ("GET",), "model_metadata"),
    Route("/v2/models/{model_name}/ready", ("GET",), "model_ready"),
    Route("/v2/models/{model_name}/infer", ("POST",), "infer"),
    Route("/v2/models/{model_name}/versions/{model_version}", ("GET",), "model_metadata"),
    Route("/v2/models/{model_name}/versions/{model_version}/ready", ("GET",), "model_ready"),
    Route("/v2/models/{model_name}/versions/{model_version}/infer", ("POST",), "infer"),
    Route("/v2/faults", ("GET", "DELETE"), "faults"),
    Route("/v2/faults/{kind}", ("POST",), "inject_fault"),
)

_BY_LENGTH: dict[int, list[Route]] = {}
for _route in ROUTES:
    _BY_LENGTH.setdefault(len(_route.segments), []).append(_route)


def match(path: str) -> tuple[Route, dict[str, str]] | None:
    """Return the route serving ``path`` and its path parameters, or None when no template matches."""
    parts = [part for part in path.split("/") if part]
    for route in _BY_LENGTH.get(len(parts), ()):
        params: dict[str, str] = {}
        for template, part in zip(route.segments, parts):
            if template.startswith("{"):
                params[template[1:-1]] = part
            elif template != part:
                break
        else:
            return route, params
    return None


@cache
def openapi_bytes() -> bytes:
    """Return the OpenAPI document as shipped in the package (UTF-8 JSON bytes)."""
    return resources.files("harness.service").joinpath(_OPENAPI_FILE).read_bytes()


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI document as a dict (a fresh copy each call)."""
    return json.loads(openapi_bytes())
