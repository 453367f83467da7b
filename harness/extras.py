"""The optional parts of the harness and the extras that install them (one table, one message).

A core install (``pip install gpu-inference-harness``) renders manifests, rebuilds reports, compares
runs, and loads or attacks any endpoint. Two parts need more, each behind an extra of the package:

- ``service``: the reference inference service (torch, uvicorn), for ``harness serve`` and every
  command that deploys it;
- ``kubernetes``: the Kubernetes platform and its chaos activities (kubernetes, chaosk8s).

Code that needs one calls `require_extra` where the work starts, before anything is deployed, so a
missing extra is one line naming it and the install command (exit 2), never an ImportError deep in
a replica's log. Light to import: nothing here imports the modules it checks.
"""

from __future__ import annotations

import importlib.util

from harness.errors import UsageError

__all__ = ["DISTRIBUTION", "EXTRAS", "MissingExtra", "missing_modules", "require_extra"]

DISTRIBUTION = "gpu-inference-harness"
# extra -> the top-level modules it installs that the harness imports (pyproject.toml lists the packages)
EXTRAS: dict[str, tuple[str, ...]] = {
    "service": ("torch", "uvicorn"),
    "kubernetes": ("kubernetes", "chaosk8s"),
}


class MissingExtra(UsageError):
    """An optional part of the harness is needed and its extra is not installed (exit 2)."""

    def __init__(self, extra: str, needed_by: str, missing: list[str]) -> None:
        self.extra = extra
        self.missing = list(missing)
        super().__init__(
            f"{needed_by} needs the {extra!r} extra ({', '.join(missing)} not installed): "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )


def missing_modules(extra: str) -> list[str]:
    """Return the modules of ``extra`` that cannot be imported here ([] when it is installed).

    Raises KeyError for an extra that is not in `EXTRAS`. Nothing is imported: only looked up.
    """
    missing = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module blocked or half-removed (sys.modules[name] = None)
            found = False
        if not found:
            missing.append(module)
    return missing


def require_extra(extra: str, needed_by: str) -> None:
    """Return when ``extra`` is installed; raise `MissingExtra` (exit 2) naming it and how to install it.

    ``needed_by`` says what needs it, as the user would name it ("harness serve", "--platform kubernetes").
    """
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(extra, needed_by, missing)
