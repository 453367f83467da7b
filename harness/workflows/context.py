"""The context of one run, composed once by its entry point and handed to the workflows it calls, as
Locust's `Environment` is handed to its runners: the run's output directory (made absolute here,
once), the platform, the service spec, the SLO (`harness.slo`), the progress callback and the record
of the run it is a part of.

The CLI builds one per command from its flags, the main job one per stage (`RunContext.part` of the
job's own), the pytest scenarios one per part of their session; `run_load`, `run_sweep` and
`run_capacity` read what they need from it instead of taking each as an argument of its own (a
sweep's and a capacity plan's SLO is the one their plan searches under, `SweepPlan.p99_ms`,
`CapacitySettings.p99_ms`: the CLI builds their context with that SLO). A path
is resolved when the context is built, so a relative ``--out`` means the directory it meant where the
command started, whatever a child process's working directory is later.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness.errors import ConfigError
from harness.paths import resolve_path
from harness.slo import Slo

if TYPE_CHECKING:
    from harness.config import ServiceSpec
    from harness.results import RunRecord

__all__ = ["RunContext"]


def _quiet(_line: str) -> None:
    pass


@dataclass(frozen=True)
class RunContext:
    """Where a run writes and what it shares with every workflow it calls (see the module docstring).

    ``out_dir`` is made absolute on construction (`harness.paths.resolve_path`; ConfigError naming
    ``out_dir`` for an empty one); ``parent`` is None for a run of its own.
    """

    out_dir: Path
    platform: str = "local"
    spec: ServiceSpec | None = None  # what is deployed (None: the workflow's own, e.g. a sweep's per point)
    slo: Slo = field(default_factory=Slo)
    progress: Callable[[str], None] = field(default=_quiet, compare=False, repr=False)
    parent: RunRecord | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", resolve_path(self.out_dir, "out_dir"))
        if not isinstance(self.slo, Slo):
            raise ConfigError("slo", self.slo, "expected a harness.slo.Slo")

    def say(self, line: str) -> None:
        """Report one line of progress."""
        self.progress(line)

    def part(self, name: str, **changes: Any) -> "RunContext":
        """Return the context of a part of this run written to ``out_dir/name`` (other fields changed as given)."""
        return replace(self, out_dir=self.out_dir / name, **changes)

    def with_(self, **changes: Any) -> "RunContext":
        """Return this context with ``changes`` (``spec=...``, ``parent=...``)."""
        return replace(self, **changes)

    def require_spec(self) -> ServiceSpec:
        """Return the service spec; raise ConfigError when the context has none."""
        if self.spec is None:
            raise ConfigError("spec", None, "this workflow deploys or measures a service spec; the run context has none")
        return self.spec
